"""Model artifacts in every supported format give the predictions of their own libraries."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import lightgbm
import numpy as np
import pytest
import xgboost

from bidder.errors import ModelLoadError
from bidder.scoring import EmbeddedScorer, identify, load_model_artifact
from bidder.scoring.artifacts import extract_pickled_booster

SEED_ROW = np.array([[2, 0, 0.0, 7.0, 3.0, 20.0, 2]], dtype=np.float32)


def test_seed_model_matches_xgboost_to_1e_6(seed_model: Path) -> None:
    scorer = EmbeddedScorer.from_path(seed_model)
    assert scorer.artifact.format == "xgboost-legacy-binary"
    assert scorer.num_features == 7
    assert scorer.artifact.model.num_tree == 50
    assert scorer.predict(SEED_ROW)[0] == pytest.approx(0.000847571762278676, abs=1e-6)


def test_seed_model_from_a_directory_and_a_bare_file(seed_model: Path, tmp_path: Path) -> None:
    with tarfile.open(seed_model) as archive:
        archive.extractall(tmp_path, filter="data")
    from_dir = EmbeddedScorer.from_path(tmp_path)
    from_file = EmbeddedScorer.from_path(tmp_path / "xgboost-model")
    assert from_dir.predict(SEED_ROW)[0] == from_file.predict(SEED_ROW)[0]
    assert from_dir.model_version == EmbeddedScorer.from_path(seed_model).model_version


@pytest.fixture(scope="module")
def training_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    features = rng.normal(size=(400, 5)).astype(np.float32)
    features[rng.random(features.shape) < 0.1] = np.nan
    labels = (np.nan_to_num(features[:, 0]) + rng.normal(scale=0.5, size=400) > 0).astype(int)
    return features, labels


@pytest.mark.parametrize("suffix", ["json", "ubj"])
def test_xgboost_json_and_ubjson(
    training_data: tuple[np.ndarray, np.ndarray], tmp_path: Path, suffix: str
) -> None:
    features, labels = training_data
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
        xgboost.DMatrix(features, label=labels),
        num_boost_round=10,
    )
    path = tmp_path / f"xgboost-model.{suffix}"
    booster.save_model(path)
    scorer = EmbeddedScorer.from_path(path)
    assert scorer.artifact.format == ("xgboost-json" if suffix == "json" else "xgboost-ubjson")
    expected = booster.inplace_predict(features)
    np.testing.assert_allclose(scorer.predict(features), expected, atol=1e-6)


def test_lightgbm_text(training_data: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    features, labels = training_data
    model = lightgbm.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1},
        lightgbm.Dataset(features, label=labels),
        num_boost_round=10,
    )
    path = tmp_path / "model.txt"
    model.save_model(path)
    scorer = EmbeddedScorer.from_path(path)
    assert scorer.artifact.format == "lightgbm-text"
    np.testing.assert_allclose(scorer.predict(features), model.predict(features), atol=1e-6)


def test_tarball_carries_the_feature_spec(tmp_path: Path, seed_model: Path) -> None:
    archive_path = tmp_path / "model.tar.gz"
    with tarfile.open(seed_model) as source, tarfile.open(archive_path, "w:gz") as target:
        member = source.getmember("xgboost-model")
        target.addfile(member, source.extractfile(member))
        spec = b'{"name": "x", "version": "1", "features": []}'
        info = tarfile.TarInfo("feature_spec.json")
        info.size = len(spec)
        target.addfile(info, io.BytesIO(spec))
    artifact = load_model_artifact(archive_path)
    assert artifact.feature_spec == spec


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("touch /tmp/bidder-pwned",))


def test_a_pickle_with_foreign_globals_is_refused_unexecuted(tmp_path: Path) -> None:
    marker = Path("/tmp/bidder-pwned")
    marker.unlink(missing_ok=True)
    path = tmp_path / "xgboost-model"
    path.write_bytes(pickle.dumps({"handle": _Exploit(), "pad": b"x" * 200}))
    with pytest.raises(ModelLoadError, match=r"(posix|os)\.system"):
        load_model_artifact(path)
    assert not marker.exists()


def test_pickled_booster_bytes_are_found_without_unpickling(seed_model: Path) -> None:
    with tarfile.open(seed_model) as archive:
        member = archive.extractfile("xgboost-model")
        assert member is not None
        data = member.read()
    raw = extract_pickled_booster(data)
    assert raw.startswith(b"CONFIG-offset:")
    model_format, payload = identify(data)
    assert model_format == "xgboost-legacy-binary"
    assert payload.startswith(b"binf")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no model file"),
        (b"\x80\x04garbage", "not a readable pickled booster"),
        (b'{"learner": 1}', "cannot parse as xgboost-json"),
        (b"short", "not a model format"),
    ],
)
def test_broken_artifacts_are_refused_clearly(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model"
    if content:
        path.mkdir()
        (path / "xgboost-model").write_bytes(content)
    else:
        path.mkdir()
    with pytest.raises(ModelLoadError, match=message):
        load_model_artifact(path)


def test_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model_artifact(tmp_path / "nowhere.tar.gz")


def test_rows_of_the_wrong_width_are_a_scoring_error(seed_model: Path) -> None:
    from bidder.errors import ScoringError

    with pytest.raises(ScoringError, match="expects"):
        EmbeddedScorer.from_path(seed_model).predict(np.zeros((1, 3), dtype=np.float32))
