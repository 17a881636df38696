"""The training section of a run's configuration (``train.*``), owned by the trainer.

The app's :class:`~genlab.app.config.Config` nests it and validates its values with the rest of
the configuration; the trainer reads nothing else of the config.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    steps: int = 5000  # optimisation steps
    batch_size: int = 256  # samples per step
    lr: float = 1e-3  # peak learning rate
    optimizer: str = "adam"  # adam, adamw or rmsprop (the original WGAN)
    betas: tuple[float, ...] = (0.9, 0.999)  # adam / adamw (GANs: 0.5, 0.999)
    d_lr: float | None = None  # adversarial families: discriminator lr (None: train.lr)
    weight_decay: float = 0.0  # decoupled for adamw, L2 for adam
    warmup_steps: int = 100  # linear warm-up: lr * (step + 1) / warmup_steps
    lr_schedule: str = "constant"  # after the warm-up: constant, cosine or linear decay to lr_min_factor * lr
    lr_min_factor: float = 0.0  # cosine / linear: the learning rate at the last step, as a fraction of lr
    grad_clip: float | None = 1.0  # max global gradient norm (None: no clipping)
    ema_decay: float = 0.999  # EMA of weights (0 disables it)
    seed: int = 0  # seeds initialisation, data order and training noise
    log_every: int = 50  # steps between metrics.jsonl / TensorBoard records
    ckpt_every: int = 1000  # steps between periodic checkpoints
    keep_checkpoints: int = 3  # periodic checkpoints kept (the final one always stays)
    threads: int | None = None  # torch CPU threads (None: torch's default)
    eval_every: int = 0  # steps between evaluations keeping the best weights in best/ (0: never)
    eval_metric: str | None = None  # lower is better: w2, mmd, fd (None: fd for digits, else w2)
    eval_n: int | None = None  # samples per evaluation during training (None: eval.n, as the final score)
    device: str = "auto"  # auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps; the run records it
    precision: str = "fp32"  # fp32, bf16 or fp16: autocast around the losses (weights stay fp32)
    tf32: bool = True  # CUDA: TF32 tensor cores for float32 matmuls and convolutions
    compile: bool | str = False  # torch.compile the networks: true, or a mode (default, max-autotune, ...)
    nonfinite: str = "stop"  # non-finite loss / gradient: stop (last checkpoint kept) or skip the step
