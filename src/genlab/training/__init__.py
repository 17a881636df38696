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
from genlab.training.optim_state import optimizer_state_from_tensors, optimizer_state_to_tensors
from genlab.training.tensorboard import (
    FILE_VERSION,
    EventWriter,
    crc32c,
    masked_crc32c,
    read_events,
    read_scalars,
)
from genlab.training.trainer import Trainer, TrainingError, TrainResult, make_optimizer, warmup_lr

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
    "FILE_VERSION",
    "FORMAT_VERSION",
    "Checkpoint",
    "EventWriter",
    "crc32c",
    "list_checkpoints",
    "load_checkpoint",
    "masked_crc32c",
    "optimizer_state_from_tensors",
    "optimizer_state_to_tensors",
    "read_events",
    "read_scalars",
    "save_checkpoint",
]
