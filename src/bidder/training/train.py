"""Training the default model on synthetic traffic, through the serving path.

Every synthetic request is encoded to JSON and decoded by `decode_bid_request`, then
vectorized by the same `Vectorizer` the bidder serves with: training and serving cannot
disagree about a feature. The output is what the bidder loads: `xgboost-model.json`,
`feature_spec.json` and a `model-card.json` recording how it was made; optionally the
SageMaker-style `model.tar.gz` of the first two. The same seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import gzip
import io
import shutil
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson
import xgboost

from bidder.features import FEATURE_SPEC_FILENAME, FeatureSpec, Vectorizer
from bidder.openrtb import decode_bid_request
from bidder.traffic.synthetic import LabelledRequest, SyntheticTraffic

DEFAULT_SPEC_PATH = Path(__file__).resolve().parent / "default_feature_spec.json"
MODEL_FILENAME = "xgboost-model.json"
MODEL_CARD_FILENAME = "model-card.json"
TARBALL_FILENAME = "model.tar.gz"
HOLDOUT_FRACTION = 0.2
LEARNING_RATE = 0.15
MIN_CHILD_WEIGHT = 5.0


@dataclass(frozen=True)
class Dataset:
    features: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int8]
    # The ground-truth probability of each label, to measure how much there was to learn.
    truths: npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrainingReport:
    feature_spec: str
    seed: int
    world_seed: int
    requests: int
    training_rows: int
    holdout_rows: int
    positive_rate: float
    holdout_auc: float
    ground_truth_auc: float
    trees: int
    max_depth: int
    learning_rate: float
    min_child_weight: float
    xgboost_version: str

    def __str__(self) -> str:
        return (
            f"trained {self.feature_spec} on {self.training_rows} impressions "
            f"(positive rate {self.positive_rate:.3f}): holdout AUC {self.holdout_auc:.4f}, "
            f"ground-truth AUC {self.ground_truth_auc:.4f} on {self.holdout_rows} impressions"
        )


def build_dataset(samples: Iterable[LabelledRequest], spec: FeatureSpec) -> Dataset:
    """One row per impression, built exactly as the bidder builds them when serving."""
    vectorizer = Vectorizer(spec)
    rows: list[list[float]] = []
    labels: list[int] = []
    truths: list[float] = []
    for sample in samples:
        request = decode_bid_request(orjson.dumps(sample.request))
        rows.extend(vectorizer.rows(request, sample.timestamp))
        labels.extend(sample.labels)
        truths.extend(sample.probabilities)
    return Dataset(
        np.asarray(rows, dtype=np.float32).reshape(-1, vectorizer.width),
        np.asarray(labels, dtype=np.int8),
        np.asarray(truths, dtype=np.float64),
    )


def auc(labels: npt.NDArray[np.int8], scores: npt.NDArray[np.float64]) -> float:
    """Area under the ROC curve by the rank-sum formula (ties get their average rank)."""
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # Each run of equal scores shares the mean of the 1-based ranks it spans.
    run_begins = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    starts = np.flatnonzero(run_begins)
    ends = np.r_[starts[1:], len(scores)]
    run_of = np.cumsum(run_begins) - 1
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = ((starts + ends + 1) / 2)[run_of]
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
    """Train on `requests` synthetic requests and write the model files into `out_dir`."""
    spec = FeatureSpec.load(spec_path)
    traffic = SyntheticTraffic(seed)
    # Whole requests go to one side or the other: impressions of one request share most of
    # their features, and splitting them would leak the holdout into training.
    holdout_requests = int(requests * HOLDOUT_FRACTION)
    training = build_dataset(traffic.samples(requests - holdout_requests), spec)
    holdout = build_dataset(traffic.samples(holdout_requests), spec)
    booster = xgboost.train(
        {
            "objective": "binary:logistic",
            "tree_method": "hist",
            "max_depth": max_depth,
            "eta": LEARNING_RATE,
            "min_child_weight": MIN_CHILD_WEIGHT,
            # One thread and a fixed seed: the same data always gives the same trees.
            "nthread": 1,
            "seed": seed,
        },
        xgboost.DMatrix(training.features, label=training.labels, missing=np.nan),
        num_boost_round=trees,
    )
    scores = booster.inplace_predict(holdout.features, missing=np.nan)
    report = TrainingReport(
        feature_spec=spec.id,
        seed=seed,
        world_seed=traffic.world_seed,
        requests=requests,
        training_rows=len(training.labels),
        holdout_rows=len(holdout.labels),
        positive_rate=float(training.labels.mean()),
        holdout_auc=auc(holdout.labels, np.asarray(scores, dtype=np.float64)),
        ground_truth_auc=auc(holdout.labels, holdout.truths),
        trees=trees,
        max_depth=max_depth,
        learning_rate=LEARNING_RATE,
        min_child_weight=MIN_CHILD_WEIGHT,
        xgboost_version=xgboost.__version__,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILENAME
    spec_copy = out_dir / FEATURE_SPEC_FILENAME
    booster.save_model(model_path)
    shutil.copyfile(spec_path, spec_copy)
    (out_dir / MODEL_CARD_FILENAME).write_bytes(
        orjson.dumps(asdict(report), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    if tarball:
        write_tarball(out_dir / TARBALL_FILENAME, [model_path, spec_copy])
    return report


def write_tarball(target: Path, files: Sequence[Path]) -> None:
    """A reproducible `model.tar.gz` of `files` at its root: fixed order, times and owners."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in files:
            data = path.read_bytes()
            info = tarfile.TarInfo(path.name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    target.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bidder.training",
        description="Train the default model on synthetic traffic.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--requests", type=int, default=200_000, help="synthetic requests")
    parser.add_argument("--seed", type=int, default=7, help="traffic and training seed")
    parser.add_argument("--trees", type=int, default=60, help="boosting rounds")
    parser.add_argument("--max-depth", type=int, default=6, help="maximum tree depth")
    parser.add_argument("--tarball", action="store_true", help=f"also write {TARBALL_FILENAME}")
    args = parser.parse_args(argv)
    report = train_default_model(
        args.out,
        requests=args.requests,
        seed=args.seed,
        trees=args.trees,
        max_depth=args.max_depth,
        tarball=args.tarball,
    )
    print(report)
    return 0
