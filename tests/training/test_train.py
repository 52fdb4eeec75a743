"""Training the default model: it learns, it is reproducible, the bidder serves it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xgboost

from bidder.features import FeatureSpec
from bidder.scoring import EmbeddedScorer
from bidder.settings import DEFAULT_MODEL_PATH
from bidder.training import auc, train_default_model


def test_small_model_learns_and_is_byte_reproducible(tmp_path: Path) -> None:
    first = train_default_model(tmp_path / "a", requests=15_000, seed=11, trees=20, tarball=True)
    second = train_default_model(tmp_path / "b", requests=15_000, seed=11, trees=20)
    assert 0.6 < first.holdout_auc < first.ground_truth_auc + 0.02
    model_a = (tmp_path / "a" / "xgboost-model.json").read_bytes()
    assert model_a == (tmp_path / "b" / "xgboost-model.json").read_bytes()
    assert second.holdout_auc == first.holdout_auc
    booster = xgboost.Booster(model_file=str(tmp_path / "a" / "xgboost-model.json"))
    spec = FeatureSpec.load(tmp_path / "a" / "feature_spec.json")
    assert booster.num_features() == spec.width
    from_tarball = EmbeddedScorer.from_path(tmp_path / "a" / "model.tar.gz")
    assert from_tarball.artifact.feature_spec == (tmp_path / "a" / "feature_spec.json").read_bytes()


def test_auc_matches_the_definition() -> None:
    labels = np.array([0, 0, 1, 1, 0, 1], dtype=np.int8)
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.9])
    pairs = [(p, n) for p in scores[labels == 1] for n in scores[labels == 0]]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert auc(labels, scores) == expected


def test_the_shipped_default_model_matches_its_spec_and_card() -> None:
    scorer = EmbeddedScorer.from_path(DEFAULT_MODEL_PATH)
    spec = FeatureSpec.load(DEFAULT_MODEL_PATH / "feature_spec.json")
    assert scorer.num_features == spec.width
    assert scorer.artifact.format == "xgboost-json"
    assert (DEFAULT_MODEL_PATH / "model-card.json").is_file()
