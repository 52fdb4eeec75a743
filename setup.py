"""The project's one compiled module, beside pyproject.toml (which holds everything else).

`bidder.recording._speedups` is the traffic recorder's costly parts done in C: it finds the
identifiers of recorded request bodies in one pass over their bytes, writes records, and
encodes the parts of a queue entry the event loop makes. It is optional: where no C
compiler is at hand the install goes on without it, and the recorder runs in Python,
giving the same records several microseconds slower each.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "bidder.recording._speedups",
            ["src/bidder/recording/_speedups.c"],
            optional=True,
        )
    ]
)
