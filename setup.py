"""The project's two compiled modules, beside pyproject.toml (which holds everything else).

- `bidder.recording._speedups` is the traffic recorder's costly parts done in C: it finds
  the identifiers of recorded request bodies in one pass over their bytes, writes records,
  and makes the queue entries on the event loop.
- `bidder.scoring._rowwise` calls the embedded model's compiled trees row by row.

Both are optional: where no C compiler is at hand the install goes on without them, and
the same work is done in Python, giving the same records and scores, microseconds slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "bidder.recording._speedups",
            ["src/bidder/recording/_speedups.c"],
            optional=True,
        ),
        Extension(
            "bidder.scoring._rowwise",
            ["src/bidder/scoring/_rowwise.c"],
            optional=True,
        ),
    ]
)
