"""Training the default model on synthetic traffic, through the serving path.

Every synthetic request is encoded to JSON and decoded by `decode_bid_request`, then
vectorized by the same `Vectorizer` the bidder serves with: training and serving cannot
disagree about a feature. The output is what the bidder loads: `xgboost-model.json`,
`feature_spec.json` and a `model-card.json` recording how it was made; optionally the
SageMaker-style `model.tar.gz` of the first two. The same seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tarfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson
import xgboost

from bidder.features import FEATURE_SPEC_FILENAME, FeatureSpec, Vectorizer
from bidder.openrtb import decode_bid_request
from bidder.traffic.synthetic import SyntheticTraffic

DEFAULT_SPEC_PATH = Path(__file__).resolve().parent / "default_feature_spec.json"
MODEL_FILENAME = "xgboost-model.json"
HOLDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class TrainingReport:
    rows: int
    positive_rate: float
    holdout_auc: float
    ground_truth_auc: float
    trees: int
    max_depth: int
    seed: int
    feature_spec: str
    xgboost_version: str

    def __str__(self) -> str:
        return (
            f"trained on {self.rows} impressions (positive rate {self.positive_rate:.3f}): "
            f"holdout AUC {self.holdout_auc:.4f}, ground-truth AUC {self.ground_truth_auc:.4f}"
        )


def build_dataset(
    requests: int, seed: int, spec: FeatureSpec
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8], npt.NDArray[np.float64]]:
    vectorizer = Vectorizer(spec)
    rows: list[list[float]] = []
    labels: list[int] = []
    truths: list[float] = []
    for sample in SyntheticTraffic(seed).samples(requests):
        request = decode_bid_request(orjson.dumps(sample.request))
        rows.extend(vectorizer.rows(request, sample.timestamp))
        labels.extend(sample.labels)
        truths.extend(sample.probabilities)
    return (
        np.asarray(rows, dtype=np.float32),
        np.asarray(labels, dtype=np.int8),
        np.asarray(truths, dtype=np.float64),
    )


def auc(labels: npt.NDArray[np.int8], scores: npt.NDArray[np.float64]) -> float:
    """Area under the ROC curve by the rank-sum formula (ties get their average rank)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(scores)]))
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2
    positives = int(labels.sum())
    negatives = len(labels) - positives
    rank_sum = float(ranks[labels == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def train_default_model(
    out_dir: Path,
    *,
    requests: int = 200_000,
    seed: int = 7,
    trees: int = 60,
    max_depth: int = 6,
    tarball: bool = False,
    spec_path: Path = DEFAULT_SPEC_PATH,
) -> TrainingReport:
    spec = FeatureSpec.load(spec_path)
    features, labels, truths = build_dataset(requests, seed, spec)
    split = int(len(labels) * (1 - HOLDOUT_FRACTION))
    booster = xgboost.train(
        {
            "objective": "binary:logistic",
            "tree_method": "hist",
            "max_depth": max_depth,
            "eta": 0.15,
            "min_child_weight": 5,
            "subsample": 1.0,
            "nthread": 1,
            "seed": seed,
        },
        xgboost.DMatrix(features[:split], label=labels[:split], missing=np.nan),
        num_boost_round=trees,
    )
    holdout = booster.inplace_predict(features[split:], missing=np.nan)
    report = TrainingReport(
        rows=len(labels),
        positive_rate=float(labels.mean()),
        holdout_auc=auc(labels[split:], np.asarray(holdout, dtype=np.float64)),
        ground_truth_auc=auc(labels[split:], truths[split:]),
        trees=trees,
        max_depth=max_depth,
        seed=seed,
        feature_spec=spec.id,
        xgboost_version=xgboost.__version__,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILENAME
    booster.save_model(model_path)
    shutil.copyfile(spec_path, out_dir / FEATURE_SPEC_FILENAME)
    (out_dir / "model-card.json").write_bytes(
        orjson.dumps(asdict(report), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    if tarball:
        _write_tarball(out_dir / "model.tar.gz", [model_path, out_dir / FEATURE_SPEC_FILENAME])
    return report


def _write_tarball(target: Path, files: Sequence[Path]) -> None:
    """A reproducible `model.tar.gz`: fixed order, times and owners."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in files:
            info = tarfile.TarInfo(path.name)
            data = path.read_bytes()
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    import gzip

    target.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bidder.training", description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tarball", action="store_true")
    args = parser.parse_args(argv)
    print(
        train_default_model(args.out, requests=args.requests, seed=args.seed, tarball=args.tarball)
    )
    return 0
