"""`requirements/*.lock` (written by `make lock`) against `pyproject.toml`: the images install
only these pins, so every dependency the project declares must be there, pinned, with hashes."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import PROJECT_ROOT

RUNTIME_LOCK = PROJECT_ROOT / "requirements" / "runtime.lock"
BUILD_LOCK = PROJECT_ROOT / "requirements" / "build.lock"
# The images are Linux; a marker such as `sys_platform != 'win32'` is judged for Linux.
LINUX = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    hashes: tuple[str, ...]

    @property
    def version(self) -> str:
        (specifier,) = self.requirement.specifier
        return specifier.version


def read_lock(path: Path) -> dict[str, Pin]:
    """pip's requirements format as pip-compile writes it: one requirement per logical line
    (backslash continuations), `--hash=` options, `#` comments."""
    pins: dict[str, Pin] = {}
    logical = path.read_text().replace("\\\n", " ")
    for line in logical.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split(" --")
        requirement = Requirement(words[0])
        hashes = tuple(word.removeprefix("hash=") for word in words[1:] if word.startswith("hash="))
        pins[canonicalize_name(requirement.name)] = Pin(requirement, hashes)
    return pins


def declared(requirements: list[str]) -> list[Requirement]:
    parsed = [Requirement(text) for text in requirements]
    return [req for req in parsed if req.marker is None or req.marker.evaluate(LINUX)]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, object]:
    with (PROJECT_ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


@pytest.mark.parametrize("path", [RUNTIME_LOCK, BUILD_LOCK], ids=["runtime", "build"])
def test_every_pin_is_exact_and_hashed(path: Path) -> None:
    pins = read_lock(path)
    assert pins, f"{path.name} is empty"
    for name, pin in pins.items():
        specifiers = list(pin.requirement.specifier)
        assert len(specifiers) == 1, f"{name}: not pinned"
        assert specifiers[0].operator == "==", f"{name}: {pin.requirement} is not an exact pin"
        assert pin.hashes, f"{name}: no hash, so --require-hashes would refuse the file"
        assert all(digest.startswith("sha256:") for digest in pin.hashes), name


def test_runtime_lock_pins_every_runtime_dependency_and_the_fast_extra(
    pyproject: dict[str, object],
) -> None:
    project = pyproject["project"]
    assert isinstance(project, dict)
    wanted = declared(project["dependencies"] + project["optional-dependencies"]["fast"])
    pins = read_lock(RUNTIME_LOCK)
    for requirement in wanted:
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement.name} is not in {RUNTIME_LOCK.name}: run make lock"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{requirement.name}=={pin.version} does not satisfy {requirement}: run make lock"
        )
    # uvloop and httptools are what `bidder serve` runs on; tl2cgen compiles the trees.
    assert {"uvloop", "httptools", "tl2cgen"} <= pins.keys()


def test_build_lock_pins_the_build_backend(pyproject: dict[str, object]) -> None:
    build_system = pyproject["build-system"]
    assert isinstance(build_system, dict)
    pins = read_lock(BUILD_LOCK)
    for requirement in declared(build_system["requires"]):
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement.name} is not in {BUILD_LOCK.name}: run make lock"
        assert requirement.specifier.contains(pin.version, prereleases=True), requirement


def test_runtime_lock_is_closed_under_dependencies() -> None:
    """Each pinned package's own requirements are pinned too (what `pip check` verifies in
    the image build), judged from the installed metadata of every pin installed here at
    its locked version."""
    pins = read_lock(RUNTIME_LOCK)
    checked = 0
    for name, pin in pins.items():
        try:
            installed = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if installed.version != pin.version:
            continue
        checked += 1
        for text in installed.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate(
                {**LINUX, "extra": ""}
            ):
                continue
            dependency = pins.get(canonicalize_name(requirement.name))
            assert dependency is not None, f"{name} needs {requirement}, which is not pinned"
            assert requirement.specifier.contains(dependency.version, prereleases=True), (
                f"{name} needs {requirement}; the lock pins {dependency.version}"
            )
    assert checked, "no pin is installed here at its locked version: run make lock"
