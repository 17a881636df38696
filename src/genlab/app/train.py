"""Training a configured run into a run directory (``genlab train``, ``genlab demo``, each run
of ``genlab compare``) and rectified flow's reflow (``genlab reflow``).

A run directory holds ``config.yaml`` (the resolved config), ``checkpoints/``,
``metrics.jsonl``, ``tb/`` (TensorBoard) and ``.genlab-lock`` (held while a process trains
into it, :mod:`genlab.app.locking`); :mod:`genlab.app.runs` loads and samples it,
:mod:`genlab.app.evaluation` scores it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml

from genlab._atomic import atomic_write_text
from genlab.app.builders import build_dataset, build_model, data_shape, training_sampler
from genlab.app.conditioning import run_conditioning
from genlab.app.config import Config, ConfigError, DataConfig, build_config, saved_run_config
from genlab.app.datasets import STANDARDIZATION_FILE, prior_fit_data, standardized
from genlab.app.evaluation import training_evaluator
from genlab.app.locking import clear_run, run_lock
from genlab.app.runs import load_run
from genlab.devices import DeviceError, make_generator, resolve_device
from genlab.training.checkpoint import list_checkpoints
from genlab.training.distributed import DistContext, barrier, init_distributed
from genlab.training.trainer import BEST_DIRNAME, Trainer, TrainResult


def train(
    cfg: Config,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    init_weights: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train the configured model into run directory ``out`` (optionally starting from
    ``init_weights``, a state dict of the same model, as reflow does)."""
    out = Path(out)
    try:
        device = resolve_device(cfg.train.device, "train.device")
    except DeviceError as err:
        raise ConfigError(str(err)) from None
    ctx = init_distributed(device)
    device = ctx.device
    cfg = replace_train(cfg, device=str(device))  # the run records the device it was trained on
    cfg = dataclasses.replace(cfg, data=absolute_paths(cfg.data))  # eval may run from elsewhere
    with run_lock(out) if ctx.is_main else contextlib.nullcontext():  # one writer per run directory
        return _train_locked(cfg, out, ctx, device, resume, overwrite, progress, init_weights)


def _train_locked(
    cfg: Config,
    out: Path,
    ctx: DistContext,
    device: torch.device,
    resume: bool,
    overwrite: bool,
    progress: bool,
    init_weights: dict[str, torch.Tensor] | None,
) -> TrainResult:
    if resume:
        if not list_checkpoints(out):
            raise ConfigError(f"--resume: no checkpoint in {out}/checkpoints; start without --resume")
    elif list_checkpoints(out):
        if not overwrite:
            raise ConfigError(
                f"{out} already holds a run; pass --resume to continue it or choose another --out"
            )
        barrier(ctx)  # every rank has seen the old run before rank 0 removes it
        if ctx.is_main:
            clear_run(out)
    if not resume and (out / BEST_DIRNAME).exists() and ctx.is_main:  # an earlier run's, never checkpointed
        shutil.rmtree(out / BEST_DIRNAME)
    barrier(ctx)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    dataset, scale = standardized(cfg.data, build_dataset(cfg.data))
    shape = data_shape(dataset)
    model = build_model(cfg, shape, getattr(dataset, "num_classes", None))
    if init_weights is not None and not resume:
        try:
            model.load_state_dict(init_weights)
        except RuntimeError:
            raise ConfigError(
                "the starting weights do not fit the configured model; reflow overrides may change "
                "training (train.*), not the network or the path (model.*)"
            ) from None
    if resume:  # refuse a changed model before anything of the run is rewritten
        _check_same_model(out, cfg)
    if ctx.is_main:
        check_writable(out, model, cfg)
    sampler = training_sampler(cfg, dataset)
    evaluate = cfg.train.eval_every > 0 and ctx.is_main
    evaluator = None
    if evaluate:
        evaluator = training_evaluator(cfg, dataset, model, out)
    try:
        trainer = Trainer(
            model,
            sampler,
            cfg.train,
            out,
            cfg.to_dict(),
            progress,
            evaluator,
            cfg.sample.use_ema,
            ctx,
            device,
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if ctx.is_main:  # the run's record, once everything that can refuse the run has accepted it
        atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        if scale is not None:
            record = {"mean": list(scale.mean), "std": list(scale.std)}
            atomic_write_text(out / STANDARDIZATION_FILE, json.dumps(record, indent=1))
    result = trainer.fit(resume=resume)
    if getattr(model, "fits_prior", False):  # VQ-VAE's code prior, a VAE's mixture prior
        _fit_prior(trainer, dataset)  # every rank fits the same prior (seeded); rank 0 saves it
        barrier(ctx)  # no rank reads the checkpoint while rank 0 rewrites it
    return result


def absolute_paths(data: DataConfig) -> DataConfig:
    """``data`` with its file paths made absolute (a run is evaluated from any directory)."""
    path, test = (str(Path(p).resolve()) if p else None for p in (data.path, data.test_path))
    return dataclasses.replace(data, path=path, test_path=test)


def replace_train(cfg: Config, **changes: Any) -> Config:
    """A copy of ``cfg`` with some ``train`` fields changed."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes))


#: bytes per parameter in a checkpoint: weights, EMA and two Adam moments (float32)
CHECKPOINT_BYTES_PER_PARAM = 4 * 4


def _check_same_model(out: Path, cfg: Config) -> None:
    """A resumed run keeps its model: refuse, in one line, a config whose model section differs
    from the one its checkpoint was trained with (naming the first setting that differs)."""
    from genlab.training.checkpoint import load_checkpoint

    saved = load_checkpoint(out).meta.get("config")
    if not isinstance(saved, dict):
        return
    before, now = _flat(saved_run_config(saved).model.to_dict()), _flat(cfg.model.to_dict())
    if before != now:
        key = next(k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k))
        raise ConfigError(
            f"--resume: model.{key} is {now.get(key)!r} but {out} was trained with {before.get(key)!r}; "
            "a resumed run keeps its model (drop the override or use a new --out)"
        )


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"net": {"width": 8}}`` -> ``{"net.width": 8}``."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_writable(out: Path, model: Any, cfg: Config) -> None:
    """Before training: the run directory can be created and written, and its disk has room
    for the checkpoints (the kept periodic ones plus the final one, with a 2x margin)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".genlab-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"cannot write to the run directory {out} ({reason}); use another --out") from None
    n_params = sum(p.numel() for p in model.parameters())
    need = 2 * n_params * CHECKPOINT_BYTES_PER_PARAM * (cfg.train.keep_checkpoints + 1)
    free = shutil.disk_usage(out).free
    if free < need:
        raise ConfigError(
            f"{out} has {free / 1e6:.1f} MB free but the checkpoints need about {need / 1e6:.1f} MB; "
            "free some space, lower train.keep_checkpoints, or choose another --out"
        )


def _fit_prior(trainer: Trainer, dataset: Any) -> None:
    """Fit the prior of a two-stage model (a VQ-VAE's code prior, a VAE's mixture prior) on
    the training data, with its weights and with the EMA weights (each set of weights has its
    own encoder, hence its own latent statistics), and rewrite the final checkpoint with both."""
    model: Any = trainer.model
    param = next(model.parameters())
    images = prior_fit_data(dataset, param)
    was_training = model.training
    model.eval()
    model.fit_prior(images)
    if trainer.ema is not None:
        with trainer.ema.swapped():
            model.fit_prior(images)
            prior = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("prior_")}
        trainer.ema.shadow.update(prior)
    model.train(was_training)
    trainer.save(keep=trainer.cfg.keep_checkpoints, pin=True)


def reflow(
    teacher_dir: str | Path,
    out: str | Path,
    n_pairs: int = 20000,
    steps: int = 100,
    overrides: list[str] | tuple[str, ...] = (),
    overwrite: bool = False,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Rectified flow's reflow: draw ``n_pairs`` pairs (x_0, ODE(x_0)) from the trained
    flow-matching run ``teacher_dir`` (RK4, ``steps`` steps, EMA weights), save them as
    ``out/pairs.npz`` and train a copy of the teacher on those fixed pairs, on ``device``
    (None: the ``train.device`` of the overrides, else ``auto``)."""
    from genlab.samplers import generate_pairs

    if device is None:
        device = build_config({}, [o for o in overrides if o.startswith("train.device=")]).train.device
    run = load_run(teacher_dir, device=device)
    m = run.cfg.model
    if m.family != "flow_matching" or getattr(run.model, "starts_from_inputs", False):
        raise ConfigError(
            f"reflow needs a flow-matching run that samples from noise; {teacher_dir} is not one"
        )
    if n_pairs < 1 or steps < 1:
        raise ConfigError(f"--pairs and --steps must be positive, got {n_pairs} and {steps}")
    out = Path(out)
    if list_checkpoints(out) and not overwrite:
        raise ConfigError(f"{out} already holds a run; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    gen = make_generator(run.device, run.cfg.train.seed + 7919)
    cond = run_conditioning(run, n_pairs)  # a class-conditional teacher: every class in turn
    y = cond.y.to(run.device) if cond.y is not None else None
    with torch.no_grad():
        x0, x1 = generate_pairs(run.model, n_pairs, steps, "rk4", gen, y=y)
    from genlab.paths import ReflowPairs

    pairs_file = ReflowPairs(x0.cpu(), x1.cpu(), cond.y).save(out / "pairs.npz").resolve()
    tree = run.cfg.to_dict()
    tree["model"].update(reflow_pairs=str(pairs_file), coupling="independent", coupling_args={})
    tree["train"]["device"] = str(run.device)
    cfg = build_config(tree, overrides)
    return train(cfg, out, overwrite=True, progress=progress, init_weights=dict(run.model.state_dict()))
