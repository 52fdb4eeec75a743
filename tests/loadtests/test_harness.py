"""The harness's servers: started, never outliving the benchmark that started them, and
what they say they left undone."""

from __future__ import annotations

import contextlib
import http.server
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
from loadtests.harness import HOST, ROOT, Tally, tally_so_far

# A benchmark in miniature: a server started through the harness, its pid printed, then a
# wait for the end that never comes.
_HARNESS = textwrap.dedent(
    """
    import sys, time
    from loadtests.harness import HOST, Server, free_port, started

    server = Server(lambda port: [sys.executable, "-m", "http.server", str(port), "-b", HOST])
    with started("http.server", server, free_port(), pin=False) as process:
        print(process.pid, flush=True)
        time.sleep(600)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_killed_benchmark_leaves_no_server_behind() -> None:
    harness = subprocess.Popen(
        [sys.executable, "-c", _HARNESS], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert harness.stdout is not None
        server = int(harness.stdout.readline())
        os.kill(server, 0)  # running
        harness.kill()  # no `finally` runs: only the kernel can end the server now
        harness.wait()
        deadline = time.monotonic() + 10
        while _alive(server):
            assert time.monotonic() < deadline, "the server outlived the harness"
            time.sleep(0.05)
    finally:
        harness.kill()
        harness.wait()


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, ended but not yet reaped by init, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


_METRICS = b"""# TYPE bidder_no_bids_total counter
bidder_no_bids_total{reason="overload"} 12.0
bidder_no_bids_total{reason="below_floor"} 40.0
# TYPE bidder_recorder_records_total counter
bidder_recorder_records_total{outcome="written"} 900.0
bidder_recorder_records_total{outcome="dropped"} 7.0
"""


class _MetricsServer(http.server.ThreadingHTTPServer):
    """Answers every GET with `body`, as a server's /metrics would."""

    def __init__(self, body: bytes) -> None:
        super().__init__((HOST, 0), _MetricsHandler)
        self.body = body


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    server: _MetricsServer

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serving(body: bytes) -> Iterator[int]:
    with _MetricsServer(body) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()


def test_a_tally_reads_requests_shed_and_records_dropped_off_the_metrics() -> None:
    with _serving(_METRICS) as port:
        tally = tally_so_far(port)
    assert tally == Tally(shed=12.0, records_dropped=7.0)
    assert tally - Tally(shed=2.0, records_dropped=7.0) == Tally(shed=10.0, records_dropped=0.0)
    assert Tally(1.0, 2.0) + Tally(3.0, 4.0) == Tally(4.0, 6.0)


def test_a_server_that_counts_neither_tallies_nothing() -> None:
    with _serving(b"# a baseline's metrics\nrequests_total 5.0\n") as port:
        assert tally_so_far(port) == Tally()
