"""`bidder model-server` against MLServer: single-row scoring, side by side in one run.

    make bench-mlserver
    python -m loadtests.mlserver_bench --mlserver-venv .venv-mlserver [--duration 5]
        [--repeats 3] [--connections 64] [--rows 200]
        [--model ../shared/seed-model/model.tar.gz] [--out result.json]

Both serve the same XGBoost model (by default the seed model) with one worker: the model
server as one uvicorn worker, MLServer twice, with inference in its server process
(`parallel_workers` 0, entry `mlserver`) and with its default of one inference worker
process beside the server (`parallel_workers` 1, entry `mlserver-pool`). All of them run
at once, each process pinned to CPU 0, with this process, the load generator, pinned to
CPU 1 (`loadtests/harness.py`). After a warm-up, closed-loop saturation runs are taken in
turns, one per server, `--repeats` times, so that the rest of the machine's work weighs on
each alike (the median run is the throughput); then an open-loop run at half of each
one's saturation gives p50/p99.

Each server gets the request its documentation calls it with, one row of the model's
features: the model server SageMaker's `POST /invocations` with a `text/csv` row;
MLServer the V2 inference protocol over REST, `POST /v2/models/<name>/infer` with a
one-row FP32 tensor. MLServer has no CSV or SageMaker-compatible route unless one writes a
custom runtime; the report records what its server answers to the model server's request
to show it. Before any load, every row's score from both servers must agree to 1e-6.

MLServer's dependencies conflict with the project's, so it runs from its own virtualenv
(`make bench-mlserver` creates `.venv-mlserver` with pinned versions). The seed model is
a pickled XGBoost Booster: the bidder's safe reader (`bidder.scoring.artifacts`) takes
the booster's legacy binary bytes out of the pickle without unpickling it, and that
virtualenv's XGBoost 2.1 (the last to read that format) saves them as XGBoost JSON, in a
temporary directory that is removed at the end, for MLServer's XGBoost runtime.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bidder.errors import ModelLoadError
from bidder.scoring.artifacts import identify, load_model_artifact
from bidder.traffic.loadgen import Request, Target, run, run_open_loop
from loadtests.bench import Plan, markdown
from loadtests.harness import (
    HOST,
    QUIET_BIDDER,
    ROOT,
    Server,
    ServerFailed,
    free_port,
    load_generator_pinned,
    machine,
    model_server_command,
    started,
    write_report,
)

SEED_MODEL = ROOT.parent / "shared" / "seed-model" / "model.tar.gz"
MODEL_NAME = "seed"
RATIO_TARGET = 3.0
# Largest difference allowed between the two servers' scores of one row.
TOLERANCE = 1e-6
ROWS_SEED = 2026
CSV = {"content-type": "text/csv"}
JSON = {"content-type": "application/json"}
# MLServer entries and their `parallel_workers`: inference in the server process, and its
# default, one inference worker process beside the server.
MLSERVER_WORKERS = {"mlserver": "0", "mlserver-pool": "1"}

# Run by MLServer's own interpreter: XGBoost 2.1 reads the legacy binary format that
# XGBoost 3 no longer does (and JSON or UBJSON), and writes the same trees as XGBoost JSON.
CONVERT = """
import sys, xgboost
with open(sys.argv[1], "rb") as model:
    booster = xgboost.Booster(model_file=bytearray(model.read()))
booster.save_model(sys.argv[2])
"""


class BenchError(RuntimeError):
    """The comparison cannot run; the message says why."""


def booster_bytes(model: Path) -> bytes:
    """The XGBoost booster of a model file, directory or SageMaker archive, as XGBoost
    loads it, through the bidder's reader: a pickled Booster is disassembled, never
    unpickled, and its legacy binary booster returned."""
    artifact = load_model_artifact(model)  # refuses hostile pickles and non-model archives
    if not artifact.format.startswith("xgboost"):
        raise BenchError(f"{model}: a {artifact.format} model; MLServer's runtime here is XGBoost")
    if model.is_dir():
        data = (model / artifact.member).read_bytes()
    elif tarfile.is_tarfile(model):
        with tarfile.open(model) as archive:
            member = archive.extractfile(artifact.member)
            if member is None:
                raise BenchError(f"{model}: {artifact.member} is not a file")
            data = member.read()
    else:
        data = model.read_bytes()
    return identify(data, origin=str(model))[1]


def prepare_repository(model: Path, python: Path, root: Path) -> Path:
    """An MLServer model repository under `root`: `<name>/model.json` and the
    `model-settings.json` of MLServer's XGBoost runtime."""
    folder = root / MODEL_NAME
    folder.mkdir()
    booster = root / "booster.bin"
    booster.write_bytes(booster_bytes(model))
    converted = subprocess.run(
        [str(python), "-c", CONVERT, str(booster), str(folder / "model.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    if converted.returncode != 0:
        raise BenchError(f"converting {model} to XGBoost JSON failed:\n{converted.stderr[-2000:]}")
    booster.unlink()
    settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_xgboost.XGBoostModel",
        "parameters": {"uri": "./model.json", "version": "v1"},
    }
    (folder / "model-settings.json").write_bytes(orjson.dumps(settings))
    return root


def feature_rows(count: int, width: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Rows of small integers (indices, hours, ids, as the seed model's features are), so
    that CSV text and FP32 tensors carry exactly the same values."""
    rng = np.random.default_rng(ROWS_SEED)
    return rng.integers(0, 24, size=(count, width)).astype(np.float32)


def csv_request(row: Sequence[float]) -> Request:
    return Request("POST", "/invocations", CSV, ",".join(f"{v:g}" for v in row).encode())


def v2_request(row: Sequence[float]) -> Request:
    tensor = {"name": "input-0", "shape": [1, len(row)], "datatype": "FP32", "data": list(row)}
    body = orjson.dumps({"inputs": [tensor]})
    return Request("POST", f"/v2/models/{MODEL_NAME}/infer", JSON, body)


def post(port: int, request: Request) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request(request.method, request.path, request.body, dict(request.headers))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def model_server_score(port: int, request: Request) -> float:
    status, body = post(port, request)
    if status != 200:
        raise BenchError(f"model server answered {status}: {body[:300]!r}")
    return float(body)


def mlserver_score(port: int, request: Request) -> float:
    status, body = post(port, request)
    if status != 200:
        raise BenchError(f"MLServer answered {status}: {body[:300]!r}")
    [output] = orjson.loads(body)["outputs"]
    return float(output["data"][0])


def model_server(model: Path) -> Server:
    return Server(
        lambda port: [*model_server_command(port), "--model-dir", str(model.resolve())],
        "/ping",
        200,
        QUIET_BIDDER,
    )


def mlserver(venv: Path, repository: Path, port: int, parallel_workers: str) -> Server:
    """MLServer with its defaults, except: loopback only, free ports, and no debug logging
    (its default logs every request, which the model server never does)."""
    return Server(
        lambda _port: [str(venv / "bin" / "mlserver"), "start", str(repository)],
        f"/v2/models/{MODEL_NAME}/ready",
        200,
        {
            "MLSERVER_HOST": HOST,
            "MLSERVER_HTTP_PORT": str(port),
            "MLSERVER_GRPC_PORT": str(free_port()),
            "MLSERVER_METRICS_PORT": str(free_port()),
            "MLSERVER_DEBUG": "false",
            "MLSERVER_PARALLEL_WORKERS": parallel_workers,
        },
        # Its metrics and environments directories go in the working directory.
        cwd=repository,
    )


def check_scores(
    model_server_port: int,
    mlserver_port: int,
    rows: np.ndarray[Any, np.dtype[np.float32]],
) -> float:
    """The largest difference between the two servers' scores over `rows`; raises past
    the tolerance."""
    worst = 0.0
    for row in rows.tolist():
        ours = model_server_score(model_server_port, csv_request(row))
        theirs = mlserver_score(mlserver_port, v2_request(row))
        worst = max(worst, abs(ours - theirs))
        if abs(ours - theirs) > TOLERANCE:
            raise BenchError(f"row {row}: model server {ours!r}, MLServer {theirs!r}")
    return worst


def csv_shape_on_mlserver(port: int, row: Sequence[float]) -> dict[str, int]:
    """What MLServer answers to the model server's own request: no route takes CSV."""
    csv = csv_request(row)
    return {
        "POST /invocations text/csv": post(port, csv)[0],
        f"POST /v2/models/{MODEL_NAME}/infer text/csv": post(
            port, csv._replace(path=f"/v2/models/{MODEL_NAME}/infer")
        )[0],
    }


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The model server's throughput over the fastest MLServer configuration's."""
    rate = {r["server"]: r["saturation_rps"] for r in results}
    rivals = {name: rate[name] for name in MLSERVER_WORKERS}
    best = max(rivals, key=lambda name: rivals[name])
    ratio = rate["model-server"] / rivals[best] if rivals[best] > 0 else float("inf")
    return {
        "fastest_mlserver": best,
        "ratio": round(ratio, 2),
        "target": RATIO_TARGET,
        "met": ratio >= RATIO_TARGET,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.mlserver_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--mlserver-venv",
        type=Path,
        default=ROOT / ".venv-mlserver",
        help="virtualenv with mlserver and mlserver-xgboost (make bench-mlserver makes it)",
    )
    parser.add_argument("--model", type=Path, default=SEED_MODEL, help="XGBoost model or archive")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=3, help="saturation runs per server")
    parser.add_argument("--connections", type=int, default=64, help="closed-loop connections")
    parser.add_argument("--rows", type=int, default=200, help="distinct rows, all checked")
    parser.add_argument("--out", type=Path, help="result JSON (default: loadtests/results/)")
    return parser


def measure_interleaved(
    ports: dict[str, int], loads: dict[str, list[Request]], plan: Plan
) -> list[dict[str, Any]]:
    """Saturation runs taken in turns (`Plan.saturate_in_turns`); then each one's half load."""
    targets = {name: Target(HOST, port) for name, port in ports.items()}
    saturations = plan.saturate_in_turns(targets, loads)
    results = []
    for name, saturation in saturations.items():
        half = run(
            run_open_loop(
                targets[name], loads[name], rate=saturation.rate / 2, duration=plan.duration
            )
        )
        results.append({"server": name, **saturation.to_dict(), "half_load": half.to_dict()})
        print(f"{name:14s} {saturation.rate:>10,.0f} req/s", file=sys.stderr)
    return results


def compare(
    args: argparse.Namespace, plan: Plan, rows: np.ndarray[Any, np.dtype[np.float32]]
) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """Starts every server, checks their answers agree, measures them; returns the checks,
    the measurements and whether the processes were pinned."""
    csv_load = [csv_request(row) for row in rows.tolist()]
    v2_load = [v2_request(row) for row in rows.tolist()]
    ports = {"model-server": free_port()} | {name: free_port() for name in MLSERVER_WORKERS}
    loads = {name: csv_load if name == "model-server" else v2_load for name in ports}
    answers: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="mlserver-bench-") as temp,
        load_generator_pinned() as pin,
        contextlib.ExitStack() as servers,
    ):
        python = args.mlserver_venv / "bin" / "python"
        repository = prepare_repository(args.model, python, Path(temp))
        servers.enter_context(
            started("model-server", model_server(args.model), ports["model-server"], pin=pin)
        )
        for name, workers in MLSERVER_WORKERS.items():
            server = mlserver(args.mlserver_venv, repository, ports[name], workers)
            servers.enter_context(started(name, server, ports[name], pin=pin))
            answers[name] = {
                "rows_checked": len(rows),
                "max_score_difference": check_scores(ports["model-server"], ports[name], rows),
                "csv_request_answered": csv_shape_on_mlserver(ports[name], rows[0].tolist()),
            }
        # Every server is up, pinned to CPU 0, and idle but for the one being loaded.
        return answers, measure_interleaved(ports, loads, plan), pin


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # MLServer runs in its model repository, so a relative path would not find it there.
    args.mlserver_venv = args.mlserver_venv.resolve()
    if not (args.mlserver_venv / "bin" / "mlserver").exists():
        parser.error(f"no mlserver in {args.mlserver_venv}: run `make bench-mlserver`")
    if args.rows < 1 or args.repeats < 1 or args.duration <= 0:
        parser.error("--rows and --repeats must be at least 1, --duration above 0")
    plan = Plan(args.duration, args.repeats, args.connections, warmup=1.0, sweep=())
    try:
        rows = feature_rows(args.rows, load_model_artifact(args.model).num_features)
        answers, results, pin = compare(args, plan, rows)
    except (ModelLoadError, ServerFailed, BenchError) as exc:
        print(f"mlserver_bench: {exc}", file=sys.stderr)
        return 1
    verdict = summary(results)
    report = {
        "machine": machine(pin),
        "settings": {
            "duration_s": plan.duration,
            "repeats": plan.repeats,
            "connections": plan.connections,
            "distinct_rows": args.rows,
            "model": str(args.model),
            "mlserver_parallel_workers": MLSERVER_WORKERS,
        },
        "answers": answers,
        "results": results,
        "model_server_over_mlserver": verdict,
    }
    out = write_report(report, args.out, "mlserver")
    print(markdown(results, {}))
    print(
        f"- model-server / {verdict['fastest_mlserver']}: **{verdict['ratio']:.2f}×** "
        f"(target ≥ {RATIO_TARGET:g}×: {'met' if verdict['met'] else 'missed'})"
    )
    for name, check in answers.items():
        print(
            f"- {name}: scores equal to the model server's within "
            f"{check['max_score_difference']:.1e} on {check['rows_checked']} rows; "
            f"the model server's CSV request gets {check['csv_request_answered']}"
        )
    print(f"\nwritten to {out}")
    return 0 if verdict["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
