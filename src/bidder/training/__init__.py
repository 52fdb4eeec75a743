"""Training the default model on synthetic traffic (needs the `train` extra: xgboost)."""

from bidder.training.train import TrainingReport, auc, build_dataset, train_default_model

__all__ = ["TrainingReport", "auc", "build_dataset", "train_default_model"]
