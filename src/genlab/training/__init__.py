"""Training infrastructure: checkpoints (safetensors, never unpickled) and TensorBoard logs."""

from genlab.training.checkpoint import (
    CHECKPOINT_DIRNAME,
    FORMAT_VERSION,
    Checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from genlab.training.config import TrainConfig
from genlab.training.ema import EMA
from genlab.training.fit import batches_from, fit
from genlab.training.optim import make_optimizer, warmup_lr
from genlab.training.optim_state import optimizer_state_from_tensors, optimizer_state_to_tensors
from genlab.training.tensorboard import EventWriter, read_scalars
from genlab.training.trainer import Trainer, TrainingError, TrainResult

__all__ = [
    "EMA",
    "TrainConfig",
    "batches_from",
    "fit",
    "Trainer",
    "TrainingError",
    "TrainResult",
    "make_optimizer",
    "warmup_lr",
    "CHECKPOINT_DIRNAME",
    "FORMAT_VERSION",
    "Checkpoint",
    "EventWriter",
    "list_checkpoints",
    "load_checkpoint",
    "optimizer_state_from_tensors",
    "optimizer_state_to_tensors",
    "read_scalars",
    "save_checkpoint",
]
