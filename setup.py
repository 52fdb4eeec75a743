"""The project's two compiled modules, beside pyproject.toml (which holds everything else).

- `bidder.recording._speedups` is the traffic recorder's costly parts done in C: it finds
  the identifiers of recorded request bodies in one pass over their bytes, writes records,
  and makes the queue entries on the event loop.
- `bidder.scoring._rowwise` calls the embedded model's compiled trees row by row.

Both are optional: where no C compiler is at hand the install goes on without them, and
the same work is done in Python, giving the same records and scores, microseconds slower.
"""

from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExtDroppingStale(build_ext):
    """Builds in place (as an editable install does) only after removing the copies an
    earlier build left in the source tree.

    An optional module that fails to compile is skipped, and setuptools then leaves the
    previous copy where it was: the package would go on importing a module compiled from
    older source instead of falling back to Python.
    """

    def run(self) -> None:
        if self.inplace:
            build_py = self.get_finalized_command("build_py")
            for extension in self.extensions:
                package = extension.name.rpartition(".")[0]
                filename = Path(self.get_ext_filename(extension.name)).name
                Path(build_py.get_package_dir(package), filename).unlink(missing_ok=True)
        super().run()


if __name__ == "__main__":
    setup(
        cmdclass={"build_ext": BuildExtDroppingStale},
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
        ],
    )
