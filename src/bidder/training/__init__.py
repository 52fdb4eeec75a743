"""Training the default model on synthetic traffic (needs the `train` extra: xgboost)."""

from bidder.training.train import (
    Dataset,
    TrainingReport,
    auc,
    build_dataset,
    main,
    train_default_model,
)

__all__ = ["Dataset", "TrainingReport", "auc", "build_dataset", "main", "train_default_model"]
