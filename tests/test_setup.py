"""setup.py's in-place build, run with setuptools on a package of its own in a temporary tree."""

from __future__ import annotations

import importlib.util
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest
from setuptools import Distribution, Extension

SETUP_PY = Path(__file__).parents[1] / "setup.py"
VALID_MODULE = """
#include <Python.h>
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fast", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__fast(void) { return PyModule_Create(&module); }
"""


def _load_setup_py() -> ModuleType:
    spec = importlib.util.spec_from_file_location("project_setup", SETUP_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # its setup() runs only as __main__
    return module


def _build_in_place(tree: Path, source: str) -> Path:
    """Builds `pkg._fast` from `source` in place over a copy an earlier build left;
    returns where that copy was."""
    package = tree / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").touch()
    (package / "_fast.c").write_text(source)
    earlier = package / f"_fast{sysconfig.get_config_var('EXT_SUFFIX')}"
    earlier.write_bytes(b"compiled from older source")
    distribution = Distribution(
        {
            "name": "pkg",
            "package_dir": {"": "src"},
            "packages": ["pkg"],
            "ext_modules": [Extension("pkg._fast", ["src/pkg/_fast.c"], optional=True)],
            "cmdclass": {"build_ext": _load_setup_py().BuildExtDroppingStale},
        }
    )
    command = distribution.get_command_obj("build_ext")
    command.inplace = True
    command.build_temp = str(tree / "build" / "temp")
    command.build_lib = str(tree / "build" / "lib")
    distribution.run_command("build_ext")
    return earlier


def test_a_module_that_fails_to_compile_leaves_no_earlier_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    earlier = _build_in_place(tmp_path, "#error this source does not compile\n")
    assert not earlier.exists(), "the package would import the older build, not fall back"


def test_a_module_that_compiles_replaces_the_earlier_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    earlier = _build_in_place(tmp_path, VALID_MODULE)
    spec = importlib.util.spec_from_file_location("pkg._fast", earlier)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)  # the older bytes would not load
    assert module.__name__ == "pkg._fast"
