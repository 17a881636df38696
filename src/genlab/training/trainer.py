"""One training loop for every model: it only calls ``model.loss(batch, generator)``.

Features: Adam / AdamW, linear learning-rate warm-up, global gradient-norm clipping, EMA of
the weights, a progress bar, ``metrics.jsonl`` and TensorBoard scalars, periodic and final
checkpoints, exact resume (weights, EMA, optimiser state, step and both random streams, so
a resumed run continues bit for bit), and a checkpoint on Ctrl-C so nothing is lost.

Randomness: two explicit generators seeded from ``cfg.seed``, one for the data order
(``sample_batch``) and one for the training noise (t, x_0 drawn inside ``loss``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genlab.config import TrainConfig
from genlab.training.checkpoint import load_checkpoint, save_checkpoint
from genlab.training.ema import EMA
from genlab.training.optim_state import optimizer_state_from_tensors, optimizer_state_to_tensors
from genlab.training.tensorboard import EventWriter

BatchSampler = Callable[[int, torch.Generator], Any]

#: offset between the data-order seed and the training-noise seed
NOISE_SEED_OFFSET = 1_000_003


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible checkpoint)."""


@dataclass
class TrainResult:
    step: int  # last completed step
    final_loss: float  # mean loss over the last logging window
    steps_per_s: float  # training throughput of this invocation
    run_dir: Path


def make_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW with the configured learning rate and weight decay."""
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.optimizer]
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def warmup_lr(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up from lr / warmup_steps to lr over the first warmup_steps steps."""
    if cfg.warmup_steps <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)


class Trainer:
    """Trains ``model`` on batches from ``sample_batch(batch_size, generator)``.

    Args:
        model: an nn.Module with ``loss(batch, generator) -> {"loss": scalar, ...}``.
        sample_batch: draws one training batch with the given generator.
        cfg: the training section of the config.
        run_dir: where checkpoints, metrics.jsonl and TensorBoard files go.
        config: the whole resolved config, stored in every checkpoint.
        progress: show a tqdm progress bar.
    """

    def __init__(
        self,
        model: nn.Module,
        sample_batch: BatchSampler,
        cfg: TrainConfig,
        run_dir: str | Path,
        config: dict[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        if not hasattr(model, "loss"):
            raise ValueError("model must define loss(batch, generator) -> {'loss': tensor}")
        self.model = model
        self.sample_batch = sample_batch
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.config = config or {}
        self.progress = progress
        self.optimizer = make_optimizer(model.parameters(), cfg)
        self.ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + NOISE_SEED_OFFSET)
        self.step = 0

    # -- checkpoints ---------------------------------------------------------------------
    def save(self, keep: int | None = None, pin: bool = False) -> Path:
        """Write a checkpoint of everything needed to resume at ``self.step``."""
        optim_tensors, optim_meta = optimizer_state_to_tensors(self.optimizer.state_dict())
        tensors: dict[str, dict[str, torch.Tensor]] = {
            "model": self.model.state_dict(),
            "optim": optim_tensors,
            "rng": {"data": self.data_gen.get_state(), "noise": self.noise_gen.get_state()},
        }
        if self.ema is not None:
            tensors["ema"] = self.ema.state_dict()
        meta = {
            "config": self.config,
            "optimizer": optim_meta,
            "model_class": type(self.model).__name__,
        }
        return save_checkpoint(self.run_dir, self.step, tensors, meta, keep=keep, pin=pin)

    def restore(self) -> None:
        """Load the latest checkpoint of ``run_dir`` into model, EMA, optimiser and RNGs."""
        ckpt = load_checkpoint(self.run_dir)
        saved_model = ckpt.meta.get("config", {}).get("model")
        if saved_model is not None and self.config.get("model") not in (None, saved_model):
            raise TrainingError(
                f"the checkpoint in {self.run_dir} was trained with a different model config; "
                "use a new --out directory or the same model settings"
            )
        try:
            self.model.load_state_dict(ckpt.tensors["model"])
            if self.ema is not None and "ema" in ckpt.tensors:
                self.ema.load_state_dict(ckpt.tensors["ema"])
            self.optimizer.load_state_dict(
                optimizer_state_from_tensors(ckpt.tensors.get("optim", {}), ckpt.meta["optimizer"])
            )
        except (RuntimeError, KeyError, ValueError) as err:
            first = str(err).strip().splitlines()[0]
            raise TrainingError(
                f"checkpoint {ckpt.path} does not fit this model ({first}); use a new --out directory"
            ) from None
        self.data_gen.set_state(ckpt.tensors["rng"]["data"])
        self.noise_gen.set_state(ckpt.tensors["rng"]["noise"])
        self.step = ckpt.step

    # -- the loop --------------------------------------------------------------------------
    def _truncate_metrics(self, path: Path) -> None:
        """On resume drop records written after the checkpoint (they will be redone)."""
        if not path.exists():
            return
        keep = [
            ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= self.step
        ]
        path.write_text("".join(line + "\n" for line in keep))

    def fit(self, resume: bool = False) -> TrainResult:
        """Train up to ``cfg.steps`` steps (continuing from the last checkpoint if resume)."""
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = self.run_dir / "metrics.jsonl"
        if resume:
            self.restore()
            self._truncate_metrics(metrics_path)
        elif metrics_path.exists():
            metrics_path.unlink()
        start = self.step
        params = [p for p in self.model.parameters() if p.requires_grad]
        clip = cfg.grad_clip if cfg.grad_clip is not None else math.inf
        window: list[float] = []
        last_loss = float("nan")
        t_start = t_window = time.perf_counter()
        bar = _progress(cfg.steps, start, self.progress)
        self.model.train()
        try:
            with EventWriter(self.run_dir / "tb") as tb, metrics_path.open("a") as log:
                while self.step < cfg.steps:
                    lr = warmup_lr(self.step, cfg)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    batch = self.sample_batch(cfg.batch_size, self.data_gen)
                    loss = self.model.loss(batch, self.noise_gen)["loss"]  # type: ignore[operator]
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"loss is {float(loss.detach())} at step {self.step + 1}; "
                            "lower train.lr "
                            f"(now {cfg.lr}) or check the data for extreme values"
                        )
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
                    self.optimizer.step()
                    if self.ema is not None:
                        self.ema.update()
                    self.step += 1
                    window.append(float(loss.detach()))
                    bar.update(1)
                    if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                        now = time.perf_counter()
                        rate = len(window) / max(now - t_window, 1e-9)
                        last_loss = sum(window) / len(window)
                        record = {
                            "step": self.step,
                            "loss": last_loss,
                            "lr": lr,
                            "grad_norm": grad_norm,
                            "steps_per_s": rate,
                        }
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                        tb.add_scalars({f"train/{k}": v for k, v in record.items() if k != "step"}, self.step)
                        bar.set_postfix(loss=f"{last_loss:.4f}", it_s=f"{rate:.0f}")
                        window, t_window = [], now
                    if self.step % cfg.ckpt_every == 0 and self.step < cfg.steps:
                        self.save(keep=cfg.keep_checkpoints)
        except KeyboardInterrupt:
            bar.close()
            self.save()
            raise
        finally:
            bar.close()
        self.save(keep=cfg.keep_checkpoints, pin=True)
        elapsed = time.perf_counter() - t_start
        done = self.step - start
        return TrainResult(
            step=self.step,
            final_loss=last_loss,
            steps_per_s=done / elapsed if elapsed > 0 and done else 0.0,
            run_dir=self.run_dir,
        )


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)
