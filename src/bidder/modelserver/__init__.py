"""`bidder model-server`: the SageMaker inference container contract for the bidder's models."""

from bidder.modelserver.app import (
    MAX_PAYLOAD_BYTES,
    ModelServerApp,
    create_model_server_app,
    default_model_dir,
)

__all__ = ["MAX_PAYLOAD_BYTES", "ModelServerApp", "create_model_server_app", "default_model_dir"]
