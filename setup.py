"""The project's one compiled module, beside pyproject.toml (which holds everything else).

`bidder.recording._identifiers` finds the identifiers of recorded request bodies in one pass
over their bytes. It is optional: where no C compiler is at hand the install goes on
without it, and redaction runs in Python, the same records a few microseconds slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "bidder.recording._identifiers",
            ["src/bidder/recording/_identifiers.c"],
            optional=True,
        )
    ]
)
