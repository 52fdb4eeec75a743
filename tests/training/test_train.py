"""Training the default model: it learns, it is reproducible, the bidder serves it."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import orjson
import xgboost

from bidder.features import FeatureSpec, VocabularyEncoding
from bidder.scoring import EmbeddedScorer
from bidder.settings import DEFAULT_MODEL_PATH
from bidder.traffic.synthetic import COUNTRY_CODES, SyntheticTraffic
from bidder.training import auc, build_dataset, main, train_default_model
from bidder.training.train import DEFAULT_SPEC_PATH


def test_small_model_learns_and_is_byte_reproducible(tmp_path: Path) -> None:
    first = train_default_model(tmp_path / "a", requests=20_000, seed=11, trees=20, tarball=True)
    second = train_default_model(tmp_path / "b", requests=20_000, seed=11, trees=20, tarball=True)

    assert 0.6 < first.holdout_auc < first.ground_truth_auc + 0.02
    assert first.training_rows > 20_000 * 0.8  # some requests carry several impressions
    for name in ("xgboost-model.json", "feature_spec.json", "model-card.json", "model.tar.gz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert second == first

    booster = xgboost.Booster(model_file=str(tmp_path / "a" / "xgboost-model.json"))
    spec = FeatureSpec.load(tmp_path / "a" / "feature_spec.json")
    assert booster.num_features() == spec.width
    card = orjson.loads((tmp_path / "a" / "model-card.json").read_bytes())
    assert card["feature_spec"] == spec.id == "default@2"
    assert card["seed"] == 11
    assert card["trees"] == 20


def test_other_seed_gives_another_model(tmp_path: Path) -> None:
    train_default_model(tmp_path / "a", requests=3000, seed=1, trees=3)
    train_default_model(tmp_path / "b", requests=3000, seed=2, trees=3)
    model = "xgboost-model.json"
    assert (tmp_path / "a" / model).read_bytes() != (tmp_path / "b" / model).read_bytes()


def test_tarball_is_what_the_bidder_loads(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path), "--requests", "3000", "--trees", "3", "--tarball"]) == 0
    with tarfile.open(tmp_path / "model.tar.gz") as archive:
        assert sorted(archive.getnames()) == ["feature_spec.json", "xgboost-model.json"]
        member = archive.extractfile("xgboost-model.json")
        assert member is not None
        assert member.read() == (tmp_path / "xgboost-model.json").read_bytes()
    scorer = EmbeddedScorer.from_path(tmp_path / "model.tar.gz")
    assert scorer.artifact.feature_spec == (tmp_path / "feature_spec.json").read_bytes()
    assert scorer.num_features == FeatureSpec.load(tmp_path / "feature_spec.json").width


def test_auc_matches_the_pairwise_definition() -> None:
    labels = np.array([0, 0, 1, 1, 0, 1, 1, 0], dtype=np.int8)
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.9, 0.4, 0.05])
    pairs = [(p, n) for p in scores[labels == 1] for n in scores[labels == 0]]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert auc(labels, scores) == expected


def test_the_spec_knows_every_country_the_traffic_has() -> None:
    spec = FeatureSpec.load(DEFAULT_SPEC_PATH)
    (country,) = [feature for feature in spec.features if feature.source == "country"]
    assert isinstance(country.encoding, VocabularyEncoding)
    assert set(COUNTRY_CODES) <= set(country.encoding.values)


def test_the_shipped_default_model_matches_its_spec_and_card() -> None:
    shipped_spec = DEFAULT_MODEL_PATH / "feature_spec.json"
    assert shipped_spec.read_bytes() == DEFAULT_SPEC_PATH.read_bytes()
    spec = FeatureSpec.load(shipped_spec)
    scorer = EmbeddedScorer.from_path(DEFAULT_MODEL_PATH)
    assert scorer.num_features == spec.width
    assert scorer.artifact.format == "xgboost-json"
    card = orjson.loads((DEFAULT_MODEL_PATH / "model-card.json").read_bytes())
    assert card["feature_spec"] == spec.id
    assert card["holdout_auc"] > 0.7
    assert not (DEFAULT_MODEL_PATH / "model.tar.gz").exists()
    assert (DEFAULT_MODEL_PATH / "xgboost-model.json").stat().st_size < 500_000


def test_the_shipped_default_model_ranks_fresh_traffic() -> None:
    spec = FeatureSpec.load(DEFAULT_MODEL_PATH / "feature_spec.json")
    unseen = build_dataset(SyntheticTraffic(seed=99).samples(5000), spec)
    scores = EmbeddedScorer.from_path(DEFAULT_MODEL_PATH).predict(unseen.features)
    booster = xgboost.Booster(model_file=str(DEFAULT_MODEL_PATH / "xgboost-model.json"))
    reference = booster.inplace_predict(unseen.features, missing=np.nan)
    np.testing.assert_allclose(scores, reference, rtol=1e-5, atol=1e-6)
    assert auc(unseen.labels, np.asarray(scores, dtype=np.float64)) > 0.65
