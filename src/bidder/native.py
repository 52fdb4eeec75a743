"""The project's optional compiled modules, built by `setup.py` where a C compiler is at hand.

Each is typed by a Protocol beside its caller (a stub file beside the module would repeat
it), and each caller does the same work in Python when its module is absent.
"""

from __future__ import annotations

import importlib
from typing import Any


def optional_module(name: str) -> Any:
    """The compiled module `name`, or None where the install went on without a compiler."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
