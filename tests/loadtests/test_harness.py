"""The harness's servers: started, and never outliving the benchmark that started them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
from loadtests.harness import ROOT

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
