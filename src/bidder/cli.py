"""The `bidder` command: serve, score, train, replay, loadgen and version."""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import signal
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from bidder import __version__
from bidder.errors import BidderError, ConfigurationError
from bidder.traffic.commands import add_commands as add_traffic_commands

# The exit status of a server that could not start, as `uvicorn.run` gives it.
STARTUP_FAILURE = 3
# Rows are scored in chunks so that `bidder score` streams: memory stays flat on huge inputs.
SCORE_CHUNK_ROWS = 4096


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except BidderError as exc:
        print(f"bidder: {exc}", file=sys.stderr)
        return 2
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bidder", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the bid server")
    serve.add_argument("--host", help="listen address (BIDDER_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (BIDDER_PORT, default 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (BIDDER_WORKERS, default 1)")
    serve.add_argument("--config", type=Path, help="TOML settings file (BIDDER_CONFIG_FILE)")
    serve.set_defaults(run=_serve)

    model_server = commands.add_parser(
        "model-server", help="serve a model under SageMaker's inference container contract"
    )
    model_server.add_argument(
        "mode", nargs="?", choices=["serve"], help="`serve`, as SageMaker starts containers"
    )
    model_server.add_argument(
        "--model-dir",
        type=Path,
        help="model directory, tar.gz or file (default /opt/ml/model, "
        "else the bidder's default model)",
    )
    model_server.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")  # noqa: S104
    model_server.add_argument(
        "--port", type=int, help="listen port (default SAGEMAKER_BIND_TO_PORT, else 8080)"
    )
    model_server.add_argument(
        "--workers",
        type=int,
        help="worker processes (default SAGEMAKER_MODEL_SERVER_WORKERS, else 1)",
    )
    model_server.set_defaults(run=_model_server)

    score = commands.add_parser(
        "score", help="score CSV feature rows from stdin, one score per line (like SageMaker)"
    )
    score.add_argument("--model", type=Path, required=True, help="model.tar.gz, dir or file")
    score.set_defaults(run=_score)

    train = commands.add_parser("train", help="train the default model on synthetic traffic")
    train.add_argument("--out", type=Path, required=True, help="output directory")
    train.add_argument("--requests", type=int, default=200_000, help="synthetic requests")
    train.add_argument("--seed", type=int, default=7, help="traffic and training seed")
    train.add_argument("--tarball", action="store_true", help="also write model.tar.gz")
    train.set_defaults(run=_train)

    add_traffic_commands(commands)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(run=lambda _: print(__version__) or 0)
    return parser


def _exit_cleanly_after_shutdown() -> None:
    """uvicorn re-raises SIGTERM/SIGINT once it has shut down gracefully, so that the default
    handler kills the process; a graceful shutdown should exit 0 instead, as orchestrators
    and SageMaker expect. The handler installed here is what uvicorn restores and re-raises to."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)


def _share_metrics_between_workers(directory: Path | None) -> str:
    """Prometheus multiprocess mode: each worker writes its values to files in one directory
    and `/metrics`, whichever worker answers it, sums them. The directory is emptied first:
    files left by an earlier run would be counted again."""
    from bidder.telemetry.metrics import MULTIPROCESS_DIR_VARIABLE

    if directory is None:
        directory = Path(tempfile.gettempdir()) / f"bidder-metrics-{os.getpid()}"
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROCESS_DIR_VARIABLE] = str(directory)
    return str(directory)


def _model_choice_file() -> Path:
    """Where the workers find the model an admin reload chose (see `server/reload.py`): this
    server's own, so a new `bidder serve` starts on the configured model."""
    from bidder.server.reload import MODEL_CHOICE_FILE_VARIABLE

    path = Path(tempfile.gettempdir()) / f"bidder-model-choice-{os.getpid()}.json"
    path.unlink(missing_ok=True)
    os.environ[MODEL_CHOICE_FILE_VARIABLE] = str(path)
    return path


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from bidder.server.listening import listening_sockets
    from bidder.settings import CONFIG_FILE_VARIABLE, load_settings
    from bidder.telemetry import configure_logging

    # Flags become environment variables so that every worker process sees the same settings.
    if args.config is not None:
        os.environ[CONFIG_FILE_VARIABLE] = str(args.config.resolve())
    for name in ("host", "port", "workers"):
        value = getattr(args, name)
        if value is not None:
            os.environ[f"BIDDER_{name.upper()}"] = str(value)
    settings = load_settings()
    scrapes = None
    model_choice = None
    if settings.workers > 1:
        model_choice = _model_choice_file()
        shared = _share_metrics_between_workers(settings.metrics_dir)
        if settings.metrics_port is not None:
            from bidder.telemetry.scrape import MetricsServer, multiprocess_registry

            # The supervisor answers scrapes, so that no worker renders the sum between bids.
            registry = multiprocess_registry(shared)
            scrapes = MetricsServer(settings.host, settings.metrics_port, registry)
    _exit_cleanly_after_shutdown()
    config = uvicorn.Config(
        "bidder.server.app:create_app_for_worker",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        # Admission control plus the header-size and read-time limits uvicorn lacks.
        http="bidder.server.connection_limits:LimitedHttpProtocol",
        loop="uvloop",
        access_log=False,
        log_config=None,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        timeout_keep_alive=settings.keepalive_timeout_seconds,
        backlog=settings.listen_backlog,
        server_header=False,
        date_header=False,
    )
    # What `uvicorn.run` does, with several listening sockets instead of one.
    sockets = listening_sockets(
        settings.host, settings.port, settings.listen_sockets, settings.listen_backlog
    )
    configure_logging(settings.log_level)
    logging.getLogger("bidder.server").info(
        "listening", extra={"address": f"{settings.host}:{settings.port}", "sockets": len(sockets)}
    )
    server = uvicorn.Server(config)
    try:
        if settings.workers > 1:
            Multiprocess(config, sockets=sockets).run()
        else:
            server.run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
        if scrapes is not None:
            scrapes.close()
        if model_choice is not None:
            model_choice.unlink(missing_ok=True)
    if settings.workers == 1 and not server.started:
        return STARTUP_FAILURE
    return 0


def _model_server(args: argparse.Namespace) -> int:
    import uvicorn

    from bidder.modelserver.app import MODEL_DIR_VARIABLE, create_model_server_app

    if args.model_dir is not None:
        os.environ[MODEL_DIR_VARIABLE] = str(args.model_dir.resolve())
    port = args.port or int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    workers = args.workers or int(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "1"))
    if workers == 1:
        # Load before binding, so a bad model fails the start with a message, not a traceback.
        app: object = create_model_server_app()
    else:
        app = "bidder.modelserver.app:create_model_server_app"
    _exit_cleanly_after_shutdown()
    uvicorn.run(
        app,  # type: ignore[arg-type]
        factory=workers > 1,
        host=args.host,
        port=port,
        workers=workers,
        http="httptools",
        loop="uvloop",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=False,
    )
    return 0


def _score(args: argparse.Namespace) -> int:
    from bidder.scoring import EmbeddedScorer

    scorer = EmbeddedScorer.from_path(args.model)
    for chunk in _csv_chunks(sys.stdin, scorer.num_features):
        scores = scorer.predict(np.asarray(chunk, dtype=np.float32))
        sys.stdout.write("".join(f"{float(score)!r}\n" for score in scores))
    return 0


def _csv_chunks(lines: Iterable[str], width: int) -> Iterable[list[list[float]]]:
    chunk: list[list[float]] = []
    for number, fields in enumerate(csv.reader(lines), start=1):
        if not fields:
            continue
        if len(fields) != width:
            raise ConfigurationError(
                f"line {number}: {len(fields)} values, the model takes {width}"
            )
        try:
            chunk.append([float(field) if field.strip() else math.nan for field in fields])
        except ValueError as exc:
            raise ConfigurationError(f"line {number}: {exc}") from None
        if len(chunk) == SCORE_CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _train(args: argparse.Namespace) -> int:
    try:
        from bidder.training import train_default_model
    except ImportError as exc:
        raise ConfigurationError(
            f"training needs the `train` extra (pip install 'bidder[train]'): {exc}"
        ) from None
    report = train_default_model(
        args.out, requests=args.requests, seed=args.seed, tarball=args.tarball
    )
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
