"""Model files are data, never code: nothing in the bidder can unpickle, and a model
directory or archive holding a hostile pickle is refused with a clear error, unexecuted."""

from __future__ import annotations

import io
import pickle
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bidder.errors import ConfigurationError, ModelLoadError
from bidder.scoring.artifacts import load_model_artifact
from bidder.server.runtime import Runtime
from bidder.telemetry import Metrics
from tests.conftest import PROJECT_ROOT, SEED_FEATURE_SPEC
from tests.server.test_bid_endpoint import seed_settings

# Every way Python code can turn bytes into objects by running code named in them.
CODE_LOADERS = re.compile(
    r"^\s*(import|from)\s+(pickle|cPickle|_pickle|dill|cloudpickle|joblib|shelve|marshal)\b"
    r"|\bpickle\.(loads?|Unpickler)\b"
    r"|\bjoblib\.load\b"
    r"|\btorch\.load\b"
    r"|\ballow_pickle\s*=\s*True\b"
    r"|\bmarshal\.loads?\b",
    re.MULTILINE,
)


def test_no_source_file_can_unpickle() -> None:
    sources = sorted((PROJECT_ROOT / "src").rglob("*.py"))
    assert len(sources) > 20, "the package's sources were found"
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)}: {match.group(0).strip()}"
        for path in sources
        for match in CODE_LOADERS.finditer(path.read_text())
    ]
    assert offenders == []


def test_the_pattern_catches_what_it_is_for() -> None:
    for line in (
        "import pickle",
        "from joblib import load",
        "model = pickle.loads(data)",
        "torch.load(path)",
        "np.load(path, allow_pickle=True)",
    ):
        assert CODE_LOADERS.search(line), line
    # Disassembling a pickle's opcodes, as the artifact reader does, runs nothing.
    assert not CODE_LOADERS.search("import pickletools")


class _RunsCommand:
    """Unpickling this runs a shell command; a safe reader must refuse it unexecuted."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


def _hostile_pickle(marker: Path, protocol: int) -> bytes:
    return pickle.dumps({"handle": _RunsCommand(marker), "pad": b"x" * 200}, protocol=protocol)


def _model_directory(root: Path, payload: bytes) -> Path:
    directory = root / "model"
    directory.mkdir()
    (directory / "xgboost-model").write_bytes(payload)
    shutil.copy(SEED_FEATURE_SPEC, directory / "feature_spec.json")
    return directory


def _model_archive(root: Path, payload: bytes) -> Path:
    archive = root / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (
            ("xgboost-model", payload),
            ("feature_spec.json", SEED_FEATURE_SPEC.read_bytes()),
        ):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return archive


# Protocols 2 and up open with the PROTO opcode, which is how a pickled booster is recognised.
@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("packaging", [_model_directory, _model_archive])
def test_a_model_holding_a_hostile_pickle_is_refused_unexecuted(
    tmp_path: Path, protocol: int, packaging: object
) -> None:
    marker = tmp_path / "executed"
    assert callable(packaging)
    path = packaging(tmp_path, _hostile_pickle(marker, protocol))
    with pytest.raises(ModelLoadError, match=r"refers to (posix|os)\.system.*refusing it"):
        load_model_artifact(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 1])
def test_an_old_protocol_pickle_is_refused_unexecuted(tmp_path: Path, protocol: int) -> None:
    """Without a PROTO opcode it is not taken for a pickle at all: treelite's binary parser,
    which builds trees and nothing else, refuses it."""
    marker = tmp_path / "executed"
    path = _model_directory(tmp_path, _hostile_pickle(marker, protocol))
    with pytest.raises(ModelLoadError, match="cannot parse"):
        load_model_artifact(path)
    assert not marker.exists()


async def test_the_bidder_refuses_to_start_on_a_hostile_model(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    directory = _model_directory(tmp_path, _hostile_pickle(marker, pickle.HIGHEST_PROTOCOL))
    settings = seed_settings(model_path=str(directory), feature_spec_path=None)
    with pytest.raises(ConfigurationError, match="pickles are never loaded"):
        await Runtime.start(settings, Metrics(CollectorRegistry()))
    assert not marker.exists()
