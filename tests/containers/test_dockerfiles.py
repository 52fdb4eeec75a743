"""The rules both images follow, checked on their Dockerfiles (no Docker engine needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.containers.images import (
    BIDDER_DOCKERFILE,
    DOCKERFILES,
    MODEL_SERVER_DOCKERFILE,
    copies_from_stage,
    copy_sources,
    exec_form,
    in_build_context,
    read_image,
)

# Anything that compiles: it may be in a build stage, never in the image that runs.
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|cc|clang|make|build-essential|libc6-dev|python3-dev)\b")

each_image = pytest.mark.parametrize("path", DOCKERFILES.values(), ids=DOCKERFILES.keys())


@each_image
def test_multi_stage_on_one_slim_python_base(path: Path) -> None:
    image = read_image(path)
    assert len(image.stages) >= 2, "a build stage and a final stage"
    assert image.stages[0].name, "the build stage is named, for COPY --from"
    bases = {stage.base for stage in image.stages}
    # One base: the virtualenv made in the build stage runs unchanged in the final one.
    assert len(bases) == 1, bases
    (base,) = bases
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base), base


@each_image
def test_final_stage_runs_as_a_non_root_user(path: Path) -> None:
    user = read_image(path).final.last("USER")
    assert user is not None, "no USER: the container would run as root"
    assert user.split(":")[0] not in {"root", "0"}


@each_image
def test_entrypoint_and_cmd_are_in_exec_form(path: Path) -> None:
    final = read_image(path).final
    entrypoint = final.last("ENTRYPOINT")
    assert entrypoint is not None
    # exec_form fails on the shell form, under which /bin/sh would get SIGTERM, not the server.
    assert exec_form(entrypoint)[0] == "bidder"
    for cmd in final.values("CMD"):
        exec_form(cmd)


@each_image
def test_healthcheck_uses_python_not_curl(path: Path) -> None:
    command = read_image(path).healthcheck()
    assert command[:2] == ["python", "-c"], "the slim image has no curl or wget"
    assert "urllib.request.urlopen('http://127.0.0.1:" in command[2]
    compile(command[2], "HEALTHCHECK", "exec")


@each_image
def test_dependencies_come_from_the_lock_with_hashes(path: Path) -> None:
    runs = " ".join(read_image(path).stages[0].values("RUN"))
    assert re.search(
        r"pip install [^&]*--require-hashes[^&]*-r requirements/runtime\.lock", runs
    ), "the runtime lock, every hash checked"
    assert re.search(r"pip install [^&]*--require-hashes[^&]*-r requirements/build\.lock", runs)
    # The project itself adds nothing the lock has not pinned.
    assert re.search(r"pip install [^&]*--no-deps [^&]*\.whl", runs)
    assert "pip check" in runs


@each_image
def test_no_build_tools_in_the_final_stage(path: Path) -> None:
    final = read_image(path).final
    for run in final.values("RUN"):
        assert "apt-get install" not in run or not BUILD_TOOLS.search(run), run
    for copy in final.values("COPY"):
        # Only the finished virtualenv and build outputs come over from the build stage.
        assert copies_from_stage(copy), f"the final stage copies from the context: {copy}"
        assert all(source.startswith("/opt/") for source in copy_sources(copy)), copy


@each_image
def test_every_copied_source_is_in_the_build_context(path: Path) -> None:
    for stage in read_image(path).stages:
        for copy in stage.values("COPY") + stage.values("ADD"):
            if copies_from_stage(copy):
                continue
            for source in copy_sources(copy):
                assert (PROJECT_ROOT / source).exists(), f"{path.name}: {source} does not exist"
                assert in_build_context(source.rstrip("/")), f".dockerignore drops {source}"


def test_the_build_context_holds_the_sources_and_nothing_else() -> None:
    for wanted in ("src/bidder/cli.py", "requirements/runtime.lock", "pyproject.toml"):
        assert in_build_context(wanted), wanted
    for unwanted in (".venv", ".git", "tests/conftest.py", "src/bidder/__pycache__/cli.pyc"):
        assert not in_build_context(unwanted), unwanted


def test_the_bidder_listens_on_every_interface_with_metrics_on_their_own_port() -> None:
    image = read_image(BIDDER_DOCKERFILE)
    assert image.env["BIDDER_HOST"] == "0.0.0.0"
    assert image.env["BIDDER_METRICS_PORT"] == "9100"
    exposed = " ".join(image.final.values("EXPOSE")).split()
    assert {image.env["BIDDER_PORT"], image.env["BIDDER_METRICS_PORT"]} <= set(exposed)


def test_the_bidder_takes_its_workers_from_the_environment() -> None:
    image = read_image(BIDDER_DOCKERFILE)
    assert image.command() == ["bidder", "serve"], "no flag that would override BIDDER_WORKERS"
    assert image.env["BIDDER_WORKERS"] == "1"


def test_the_bidder_ships_the_default_model_compiled() -> None:
    image = read_image(BIDDER_DOCKERFILE)
    build_runs = " ".join(image.stages[0].values("RUN"))
    assert "compiled" in build_runs, "the build fails if the trees did not compile"
    assert any("/opt/bidder/compiled" in copy for copy in image.final.values("COPY"))
    assert image.env["BIDDER_COMPILE_CACHE_DIR"] == "/opt/bidder/compiled"


@each_image
def test_the_wheel_is_built_with_setup_py_and_its_c_modules(path: Path) -> None:
    build = read_image(path).stages[0]
    copied = [source for copy in build.values("COPY") for source in copy_sources(copy)]
    assert "setup.py" in copied, "without it the wheel has no C modules"


def test_the_bidder_image_fails_to_build_without_its_c_modules() -> None:
    build_runs = " ".join(read_image(BIDDER_DOCKERFILE).stages[0].values("RUN"))
    assert "import bidder.recording._speedups, bidder.scoring._rowwise" in build_runs
    assert "gcc" in build_runs


def test_the_model_server_starts_as_sagemaker_starts_it() -> None:
    image = read_image(MODEL_SERVER_DOCKERFILE)
    # SageMaker runs `docker run IMAGE serve`: the argument replaces CMD only.
    assert image.command() == ["bidder", "model-server", "serve"]
    assert exec_form(image.final.last("CMD") or "") == ["serve"]
    assert "8080" in " ".join(image.final.values("EXPOSE")).split()
    labels = " ".join(image.final.values("LABEL"))
    assert "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in labels
