"""One training loop for every model: it calls ``model.loss(batch, generator)``, or, for the
adversarial families (a model with ``d_loss``, ``g_loss`` and ``player_parameters``, as
:class:`~genlab.models.adversarial.AdversarialModel` defines them), alternates
``n_critic`` discriminator updates with one generator update, each player with its own
optimiser.

Features: Adam / AdamW / RMSProp, linear learning-rate warm-up, global gradient-norm clipping, EMA of
the weights, a progress bar, ``metrics.jsonl`` and TensorBoard scalars, periodic and final
checkpoints, exact resume (weights, EMA, optimiser state, step and both random streams, so
a resumed run continues bit for bit), and a checkpoint on Ctrl-C so nothing is lost.
Diagnostics that a loss returns besides ``"loss"`` (KL, perplexity, critic outputs, ...)
are averaged over the logging window into ``metrics.jsonl``. With an ``evaluator`` the
sampling weights are scored every ``eval_every`` steps and the best ones kept in
``RUN_DIR/best/`` (GANs often degrade late in training).

Randomness: two explicit generators seeded from ``cfg.seed``, one for the data order
(``sample_batch``) and one for the training noise (t, x_0 drawn inside ``loss``).

Devices (``train.device``): the model, its EMA and the optimiser state live on the device;
the data are drawn on the CPU with the CPU data generator (so the data order is the same on
every device) and each batch is moved to the device; the noise generator lives on the
device, so the noise is drawn where it is used. ``train.precision`` runs the losses under
bf16 or fp16 autocast (fp16 with a ``GradScaler`` whose state is checkpointed);
``train.compile`` compiles the networks (:mod:`genlab.training.compile`). A checkpoint is
device-free: a run resumes on another device, exactly on the one it was made on (a CUDA
generator's state does not fit a CPU one: resumed elsewhere, the noise continues from a
stream reseeded from the step, with one warning line).
"""

from __future__ import annotations

import copy
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genlab.devices import autocast, make_generator, needs_grad_scaler, resolve_device, set_tf32, to_device
from genlab.training.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from genlab.training.compile import compile_mode, compile_networks, uncompile
from genlab.training.config import TrainConfig
from genlab.training.distributed import (
    DistContext,
    all_true,
    any_true,
    average_gradients,
    barrier,
    broadcast_buffers,
    gather_states,
    mean_over_ranks,
    shard,
    sliced_noise,
    wrap,
)
from genlab.training.ema import EMA
from genlab.training.optim import make_optimizer, set_lr
from genlab.training.optim_state import optimizer_state_from_tensors, optimizer_state_to_tensors
from genlab.training.records import progress_bar, read_scalars_of, truncate_metrics
from genlab.training.tensorboard import EventWriter

BatchSampler = Callable[[int, torch.Generator], Any]
#: scores a model's samples, lower is better (e.g. W2 to held-out data)
Evaluator = Callable[[nn.Module], float]

#: offset between the data-order seed and the training-noise seed
NOISE_SEED_OFFSET = 1_000_003
#: sub-directory of a run holding the checkpoint with the best evaluation score
BEST_DIRNAME = "best"
#: name of the single optimiser of a non-adversarial model
MAIN = "main"


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible checkpoint)."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM (pre-emption) stopped training after a checkpoint at the end of a step."""


class _SkipStep(Exception):
    """A non-finite loss or gradient with ``train.nonfinite=skip``: no update this step."""


@dataclass
class TrainResult:
    step: int  # last completed step
    final_loss: float  # mean loss over the last logging window
    steps_per_s: float  # training throughput of this invocation
    run_dir: Path
    eval_seconds: float = 0.0  # of this invocation's wall time, spent in ``evaluator`` calls
    device: str = "cpu"  # where the run trained


def is_adversarial(model: nn.Module) -> bool:
    """Whether ``model`` trains by alternating updates: it has ``d_loss``, ``g_loss``,
    ``player_parameters`` and ``after_d_step`` (the trainer knows models by these methods
    only, not by their classes)."""
    names = ("d_loss", "g_loss", "player_parameters", "after_d_step")
    return all(callable(getattr(model, name, None)) for name in names)


class Trainer:
    """Trains ``model`` on batches from ``sample_batch(batch_size, generator)``.

    Args:
        model: an nn.Module with ``loss(batch, generator) -> {"loss": scalar, ...}``.
        sample_batch: draws one training batch with the given generator.
        cfg: the training section of the config.
        run_dir: where checkpoints, metrics.jsonl and TensorBoard files go.
        config: the whole resolved config, stored in every checkpoint.
        progress: show a tqdm progress bar.
        evaluator: scores the sampling weights (EMA if kept), lower is better; called every
            ``cfg.eval_every`` steps and at the end, the best weights go to ``RUN_DIR/best``.
        evaluate_ema: score (and keep) the EMA weights when there are any, else the raw ones.
        dist_ctx: this process's place in a torchrun process group (see
            :mod:`genlab.training.distributed`); None trains in one process.
        device: where to train; None: the process group's device when distributed, else
            ``cfg.device`` (``auto``: CUDA, else MPS, else the CPU).
    """

    def __init__(
        self,
        model: nn.Module,
        sample_batch: BatchSampler,
        cfg: TrainConfig,
        run_dir: str | Path,
        config: dict[str, Any] | None = None,
        progress: bool = True,
        evaluator: Evaluator | None = None,
        evaluate_ema: bool = True,
        dist_ctx: DistContext | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.dist = dist_ctx or DistContext()
        if device is None:
            device = self.dist.device if self.dist.enabled else cfg.device
        self.device = resolve_device(device, "train.device")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if self.device.type == "cuda":
            set_tf32(cfg.tf32)
        if cfg.batch_size % self.dist.world_size:
            raise ValueError(
                f"train.batch_size={cfg.batch_size} must be divisible by the number of processes "
                f"({self.dist.world_size}); every process trains on an equal shard of the batch"
            )
        self.adversarial = is_adversarial(model)
        if not self.adversarial and not hasattr(model, "loss"):
            raise ValueError("model must define loss(batch, generator) -> {'loss': tensor}")
        self.model = model.to(self.device)
        self.sample_batch = sample_batch
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.config = config or {}
        self.progress = progress
        self.evaluator = evaluator
        self.eval_seconds = 0.0  # time spent scoring (train.eval_every) in this invocation
        self.evaluate_ema = evaluate_ema
        self._interrupted = False
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        if self.adversarial:
            players = model.player_parameters()  # type: ignore[operator]
            d_lr = cfg.d_lr if cfg.d_lr is not None else cfg.lr
            self.optimizers["d"] = make_optimizer(players["d"], cfg, d_lr)
            self.optimizers["g"] = make_optimizer(players["g"], cfg)
        else:
            groups = model.param_groups() if hasattr(model, "param_groups") else model.parameters()  # type: ignore[operator]
            self.optimizers[MAIN] = make_optimizer(groups, cfg)
        # fp16 gradients underflow without loss scaling: one scaler per optimiser
        self.scalers = {
            name: torch.amp.GradScaler(self.device.type)
            for name in self.optimizers
            if needs_grad_scaler(cfg.precision)
        }
        self.ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.data_gen = torch.Generator().manual_seed(cfg.seed)  # on the CPU: one data order everywhere
        self.noise_gen = make_generator(self.device, self._noise_seed())
        # DDP for the one-loss families; the adversarial ones average each player's gradients
        # with an explicit all-reduce (see distributed.average_gradients)
        self.caller = None if self.adversarial else wrap(model, self.dist)
        self.skipped = 0  # steps skipped for a non-finite loss or gradient (train.nonfinite=skip)
        self.step = 0
        self.best: float = math.inf  # best evaluation score so far
        self.compile_mode = compile_mode(cfg.compile)
        self.compiled = compile_networks(model, self.compile_mode) if self.compile_mode is not None else []

    def _noise_seed(self, step: int = 0) -> int:
        """Seed of the training-noise stream, the same on every rank (each keeps its rows of
        the global batch's draws, see :class:`~genlab.training.distributed.SlicedNoise`;
        ``step`` > 0: the stream reseeded on resuming on another kind of device)."""
        return self.cfg.seed + NOISE_SEED_OFFSET + step

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimiser of a non-adversarial model (adversarial ones: ``optimizers``)."""
        return self.optimizers[MAIN] if MAIN in self.optimizers else self.optimizers["g"]

    # -- checkpoints ---------------------------------------------------------------------
    def save(self, keep: int | None = None, pin: bool = False) -> Path | None:
        """Write a checkpoint of everything needed to resume at ``self.step`` (rank 0 writes;
        every rank must call this: it gathers the ranks' noise generators)."""
        noise = gather_states(self.noise_gen.get_state(), self.dist)
        if not self.dist.is_main:
            return None
        rng = {"data": self.data_gen.get_state(), "noise": noise[0]}
        rng.update({f"noise_{r}": state for r, state in enumerate(noise) if r > 0})
        tensors: dict[str, dict[str, torch.Tensor]] = {"model": self.model.state_dict(), "rng": rng}
        meta: dict[str, Any] = {
            "config": self.config,
            "model_class": type(self.model).__name__,
            "world_size": self.dist.world_size,
            "skipped_steps": self.skipped,
            "device": str(self.device),
            "generator_device": self.noise_gen.device.type,
        }
        for name, scaler in self.scalers.items():
            meta[f"grad_scaler_{name}"] = scaler.state_dict()
        for name, optimizer in self.optimizers.items():
            optim_tensors, optim_meta = optimizer_state_to_tensors(optimizer.state_dict())
            tensors[_optim_key(name)] = optim_tensors
            meta[_optim_meta_key(name)] = optim_meta
        if self.ema is not None:
            tensors["ema"] = self.ema.state_dict()
        if self.evaluator is not None:
            meta["best_score"] = self.best if math.isfinite(self.best) else None
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
            for name, optimizer in self.optimizers.items():
                # the saved state brings its own hyper-parameters; the config's win (a resumed
                # run may change train.lr, d_lr, betas or weight_decay)
                configured = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
                optimizer.load_state_dict(
                    optimizer_state_from_tensors(
                        ckpt.tensors.get(_optim_key(name), {}), ckpt.meta[_optim_meta_key(name)]
                    )
                )
                for group, settings in zip(optimizer.param_groups, configured, strict=True):
                    group.update(settings)
        except (RuntimeError, KeyError, ValueError) as err:
            first = str(err).strip().splitlines()[0]
            raise TrainingError(
                f"checkpoint {ckpt.path} does not fit this model ({first}); use a new --out directory"
            ) from None
        self.data_gen.set_state(ckpt.tensors["rng"]["data"])
        saved_world = int(ckpt.meta.get("world_size", 1))
        if saved_world != self.dist.world_size:
            raise TrainingError(
                f"the checkpoint in {self.run_dir} was written by {saved_world} process(es); resume it "
                f"with the same number (now {self.dist.world_size}) to continue bit for bit"
            )
        key = "noise" if self.dist.rank == 0 else f"noise_{self.dist.rank}"
        saved_gen = str(ckpt.meta.get("generator_device", "cpu"))
        if saved_gen == self.noise_gen.device.type:
            self.noise_gen.set_state(ckpt.tensors["rng"][key])
        else:  # a CUDA (Philox) state does not fit a CPU generator, nor the other way round
            self.noise_gen.manual_seed(self._noise_seed(ckpt.step))
            if self.dist.is_main:
                print(
                    f"warning: {self.run_dir} was trained with its noise drawn on {saved_gen}, resumed on "
                    f"{self.noise_gen.device.type}: training goes on with a reseeded noise stream (a resume "
                    "is bit for bit only on the kind of device the run was made on)",
                    file=sys.stderr,
                )
        for name, scaler in self.scalers.items():
            state = ckpt.meta.get(f"grad_scaler_{name}")
            if state:  # absent when the run was trained in fp32 / bf16: the scaler starts afresh
                scaler.load_state_dict(state)
        self.skipped = int(ckpt.meta.get("skipped_steps", 0))
        self.step = ckpt.step
        best = ckpt.meta.get("best_score")
        self.best = float(best) if best is not None else math.inf

    # -- the loop --------------------------------------------------------------------------
    def _defer_interrupts(self) -> Any:
        """Make Ctrl-C (SIGINT) and SIGTERM (pre-emption) stop the run at the end of the
        current step (a step interrupted half way, e.g. between the critic's and the
        generator's updates, cannot be resumed bit for bit); a second signal interrupts at
        once. Returns the previous handlers, or None when not in the main thread (signals
        cannot be handled there)."""
        if threading.current_thread() is not threading.main_thread():
            return None
        self._interrupted = False
        self._signal = signal.SIGINT

        def handler(signum: int, frame: Any) -> None:
            if self._interrupted:
                raise KeyboardInterrupt
            self._interrupted, self._signal = True, signal.Signals(signum)

        return signal.signal(signal.SIGINT, handler), signal.signal(signal.SIGTERM, handler)

    def _nonfinite(self, what: str, value: float) -> None:
        """Stop (default) or skip the step (``train.nonfinite=skip``) on a non-finite value."""
        if self.cfg.nonfinite == "skip":
            raise _SkipStep
        saved = list_checkpoints(self.run_dir)
        kept = f"the checkpoint of step {saved[-1]} is kept" if saved else "no checkpoint was written yet"
        raise TrainingError(
            f"{what} is {value} at step {self.step + 1}; lower train.lr (now {self.cfg.lr}), check the "
            f"data for extreme values, or set train.nonfinite=skip ({kept})"
        )

    def _update(self, name: str, loss: torch.Tensor, params: list[nn.Parameter], what: str) -> float:
        """One optimiser step of ``name`` on ``loss``; returns the gradient norm (averaged over
        the ranks by DDP when distributed)."""
        if not all_true(bool(torch.isfinite(loss)), self.dist):
            self._nonfinite(what, float(loss.detach()))
        optimizer = self.optimizers[name]
        scaler = self.scalers.get(name)
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if self.adversarial:
            average_gradients(params, self.dist)
        if scaler is not None:
            scaler.unscale_(optimizer)  # clip the true gradients
        clip = self.cfg.grad_clip if self.cfg.grad_clip is not None else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        if scaler is not None:
            # an fp16 overflow: the scaler skips this update and lowers the scale (not an error)
            scaler.step(optimizer)
            scaler.update()
            return grad_norm
        if not math.isfinite(grad_norm):
            optimizer.zero_grad(set_to_none=True)
            self._nonfinite(f"the gradient norm of {what}", grad_norm)
        optimizer.step()
        return grad_norm

    def _call(self, method: str, batch: Any) -> dict[str, torch.Tensor]:
        """``model.method(batch, noise_gen)``, through DDP when distributed, under bf16 / fp16
        autocast with ``train.precision`` (the weights and the optimiser stay fp32)."""
        n = self.cfg.batch_size // self.dist.world_size  # rows of this rank's shard
        with autocast(self.device, self.cfg.precision), sliced_noise(self.noise_gen, self.dist, n):
            if self.caller is not None:
                out = self.caller(method, batch, self.noise_gen)
            else:
                out = getattr(self.model, method)(batch, self.noise_gen)
        return {
            k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
            for k, v in out.items()
        }

    def _batch(self) -> Any:
        """The global batch (the same on every rank), then this rank's shard of it."""
        batch = shard(self.sample_batch(self.cfg.batch_size, self.data_gen), self.dist)
        return to_device(batch, self.device, non_blocking=self.device.type == "cuda")

    def _train_step(self, params: dict[str, list[nn.Parameter]]) -> tuple[dict[str, float], float, float]:
        """One training step: (scalars to log, gradient norm, learning rate)."""
        lr = self.cfg.lr
        for optimizer in self.optimizers.values():
            lr = set_lr(optimizer, self.step, self.cfg)
        if self.compile_mode is not None and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # CUDA graphs (reduce-overhead): a new step
        model: Any = self.model
        if not self.adversarial:
            out = self._call("loss", self._batch())
            grad_norm = self._update(MAIN, out["loss"], params[MAIN], "loss")
            return read_scalars_of(out), grad_norm, lr
        d_records = []
        for _ in range(model.n_critic):
            batch = self._batch()
            d_out = self._call("d_loss", batch)
            self._update("d", d_out["loss"], params["d"], "the discriminator loss")
            model.after_d_step()
            d_records.append(read_scalars_of(d_out))
        g_out = self._call("g_loss", batch)
        grad_norm = self._update("g", g_out["loss"], params["g"], "the generator loss")
        broadcast_buffers(self.model, self.dist)  # BatchNorm statistics: rank 0's everywhere
        record = {k: sum(r[k] for r in d_records) / len(d_records) for k in d_records[0]}
        record["d_loss"] = record.pop("loss")
        record.update({f"g_{k}" if k == "loss" else k: v for k, v in read_scalars_of(g_out).items()})
        record["loss"] = record["g_loss"]
        return record, grad_norm, lr

    def _compiled_step(self, params: dict[str, list[nn.Parameter]]) -> tuple[dict[str, float], float, float]:
        """The first step after ``train.compile``, where torch.compile compiles the
        networks: if it fails, everything the step touched (weights, optimiser, scalers,
        random streams) is put back, the networks go back to eager mode with one warning
        line, and the step is taken again."""
        saved: dict[str, Any] = copy.deepcopy(
            {
                "model": self.model.state_dict(),
                "optim": {k: o.state_dict() for k, o in self.optimizers.items()},
                "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
                "rng": (self.data_gen.get_state(), self.noise_gen.get_state()),
            }
        )
        try:
            out = self._train_step(params)
        except _SkipStep:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of the compiled step falls back
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            uncompile(self.compiled)
            self.compiled = []
            self.model.load_state_dict(saved["model"])
            for k, optimizer in self.optimizers.items():
                optimizer.load_state_dict(saved["optim"][k])
            for k, scaler in self.scalers.items():
                scaler.load_state_dict(saved["scalers"][k])
            self.data_gen.set_state(saved["rng"][0])
            self.noise_gen.set_state(saved["rng"][1])
            if self.dist.is_main:
                print(
                    f"warning: train.compile failed ({type(err).__name__}: {first}); training in eager mode",
                    file=sys.stderr,
                )
            return self._train_step(params)
        self.compiled = []  # compiled and working: later steps call the compiled networks as usual
        return out

    def _evaluate(self, tb: EventWriter, log: Any) -> None:
        """Score the sampling weights; keep them in RUN_DIR/best when they are the best
        (rank 0 only: the others go on to the next step and wait for it there)."""
        assert self.evaluator is not None
        t0 = time.perf_counter()
        was_training = self.model.training
        ema = self.ema is not None and self.evaluate_ema
        # sampling runs the networks eagerly: compiled for training, a CUDA graph
        # (reduce-overhead) would overwrite the outputs a multi-stage solver keeps
        eager = torch.compiler.set_stance("force_eager") if self.compile_mode else nullcontext()
        with self.ema.swapped() if ema and self.ema is not None else nullcontext(), eager:
            score = float(self.evaluator(self.model))
            improved = math.isfinite(score) and score < self.best
            if improved:
                self.best = score
                meta = {
                    "config": self.config,
                    "model_class": type(self.model).__name__,
                    "score": score,
                    "ema": ema,
                }
                weights = {"model": self.model.state_dict()}
                save_checkpoint(self.run_dir / BEST_DIRNAME, self.step, weights, meta, keep=1)
        self.model.train(was_training)
        name = str(getattr(self.evaluator, "metric", "score"))  # e.g. w2, fd
        record = {"step": self.step, "eval": score, "best": self.best, "metric": name}
        log.write(json.dumps(record) + "\n")
        log.flush()
        tb.add_scalars({f"eval/{name}": score, f"eval/best_{name}": self.best}, self.step)
        self.eval_seconds += time.perf_counter() - t0

    def fit(self, resume: bool = False) -> TrainResult:
        """Train up to ``cfg.steps`` steps (continuing from the last checkpoint if resume)."""
        cfg, main = self.cfg, self.dist.is_main
        metrics_path = self.run_dir / "metrics.jsonl"
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        barrier(self.dist)
        if resume:
            self.restore()
            if main:
                truncate_metrics(metrics_path, self.step)
        elif main and metrics_path.exists():
            metrics_path.unlink()
        start = self.step
        if self.adversarial:
            params = {
                name: [p for p in group if p.requires_grad]
                for name, group in self.model.player_parameters().items()  # type: ignore[operator]
            }
        else:
            params = {MAIN: [p for p in self.model.parameters() if p.requires_grad]}
        window: list[dict[str, float]] = []
        last_loss = float("nan")
        t_start = t_window = time.perf_counter()
        bar = progress_bar(cfg.steps, start, self.progress and main)
        self.model.train()
        previous_handler = self._defer_interrupts()
        try:
            with (
                EventWriter(self.run_dir / "tb") if main else nullcontext(None) as tb,
                metrics_path.open("a") if main else nullcontext(None) as log,
            ):
                while self.step < cfg.steps:
                    try:
                        if self.compiled:
                            scalars, grad_norm, lr = self._compiled_step(params)
                        else:
                            scalars, grad_norm, lr = self._train_step(params)
                    except _SkipStep:
                        self.skipped += 1
                        scalars, grad_norm, lr = {}, float("nan"), self.cfg.lr
                    if self.ema is not None and scalars:
                        self.ema.update()
                    self.step += 1
                    if scalars:
                        window.append(scalars)
                    bar.update(1)
                    if (self.step % cfg.log_every == 0 or self.step == cfg.steps) and all_true(
                        bool(window), self.dist
                    ):
                        now = time.perf_counter()
                        rate = len(window) / max(now - t_window, 1e-9)
                        means = {k: sum(r[k] for r in window) / len(window) for k in window[0]}
                        means = mean_over_ranks(means, self.dist)
                        last_loss = means["loss"]
                        record = {"step": self.step, **means, "lr": lr, "grad_norm": grad_norm}
                        record.update(steps_per_s=rate, skipped=self.skipped)
                        if log is not None and tb is not None:  # rank 0
                            log.write(json.dumps(record) + "\n")
                            log.flush()
                            tb.add_scalars(
                                {f"train/{k}": v for k, v in record.items() if k != "step"}, self.step
                            )
                        bar.set_postfix(loss=f"{last_loss:.4f}", it_s=f"{rate:.0f}")
                        window, t_window = [], now
                    if (
                        self.evaluator is not None
                        and cfg.eval_every > 0
                        and log is not None
                        and tb is not None
                    ):
                        if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                            self._evaluate(tb, log)
                    if self.step % cfg.ckpt_every == 0 and self.step < cfg.steps:
                        self.save(keep=cfg.keep_checkpoints)
                    if any_true(self._interrupted, self.dist):  # a signal came during this step
                        raise Interrupted if self._signal == signal.SIGTERM else KeyboardInterrupt
        except KeyboardInterrupt:
            bar.close()
            self.save()
            raise
        finally:
            bar.close()
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler[0])
                signal.signal(signal.SIGTERM, previous_handler[1])
        self.save(keep=cfg.keep_checkpoints, pin=True)
        barrier(self.dist)
        elapsed = time.perf_counter() - t_start
        done = self.step - start
        return TrainResult(
            step=self.step,
            final_loss=last_loss,
            steps_per_s=done / elapsed if elapsed > 0 and done else 0.0,
            run_dir=self.run_dir,
            eval_seconds=self.eval_seconds,
            device=str(self.device),
        )


def _optim_key(name: str) -> str:
    """Checkpoint group of an optimiser's tensors ("optim" for a single optimiser)."""
    return "optim" if name == MAIN else f"optim_{name}"


def _optim_meta_key(name: str) -> str:
    return "optimizer" if name == MAIN else f"optimizer_{name}"


def has_best(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a best-by-evaluation checkpoint."""
    return bool(list_checkpoints(Path(run_dir) / BEST_DIRNAME))
