"""Run-level workflows behind the CLI: train, load, sample, reflow (scoring a run is in
:mod:`genlab.evaluation`).

A run directory holds ``config.yaml`` (the resolved config), ``checkpoints/``,
``metrics.jsonl``, ``tb/`` (TensorBoard) and, after evaluation, ``eval.json`` and
``figures/`` (drawn by :mod:`genlab.reporting`).
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from genlab._atomic import atomic_write_text
from genlab.builders import build_dataset, build_model, data_shape, training_sampler
from genlab.conditioning import Conditioning, run_conditioning
from genlab.config import Config, ConfigError, SampleConfig, build_config, load_config
from genlab.data.images import ImageDataset
from genlab.devices import DeviceError, make_generator, resolve_device
from genlab.models.base import Solution
from genlab.training.checkpoint import list_checkpoints, load_checkpoint
from genlab.training.distributed import barrier, init_distributed
from genlab.training.ema import EMA
from genlab.training.trainer import BEST_DIRNAME, Trainer, TrainResult, has_best


def packaged_configs() -> list[str]:
    """Names of the configs shipped with genlab (also under configs/ in the repository)."""
    root = resources.files("genlab") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve_config(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML file, or a packaged config by name (``moons``, ``digits``, ...)."""
    path = Path(name_or_path)
    if not path.exists() and name_or_path in packaged_configs():
        text = (resources.files("genlab") / "configs" / f"{name_or_path}.yaml").read_text()
        return build_config(yaml.safe_load(text), overrides)
    if not path.exists():
        raise ConfigError(
            f"config {name_or_path!r} not found; give a YAML file or one of: {', '.join(packaged_configs())}"
        )
    return load_config(path, overrides)


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
            shutil.rmtree(out)
    if not resume and (out / BEST_DIRNAME).exists() and ctx.is_main:  # an earlier run's, never checkpointed
        shutil.rmtree(out / BEST_DIRNAME)
    barrier(ctx)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    dataset = build_dataset(cfg.data)
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
    if ctx.is_main:
        check_writable(out, model, cfg)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    sampler = training_sampler(cfg, dataset)
    evaluate = cfg.train.eval_every > 0 and ctx.is_main
    evaluator = None
    if evaluate:
        from genlab.evaluation import training_evaluator

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
    result = trainer.fit(resume=resume)
    if hasattr(model, "fit_prior"):  # VQ-VAE: the code prior, for the weights that will sample
        _fit_code_prior(trainer, dataset)
    return result


def replace_train(cfg: Config, **changes: Any) -> Config:
    """A copy of ``cfg`` with some ``train`` fields changed."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes))


#: bytes per parameter in a checkpoint: weights, EMA and two Adam moments (float32)
CHECKPOINT_BYTES_PER_PARAM = 4 * 4


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


def _fit_code_prior(trainer: Trainer, dataset: Any) -> None:
    """Fit a VQ-VAE's code prior on the training images, with its weights and with the EMA
    weights (each set of weights has its own encoder, hence its own code statistics), and
    rewrite the final checkpoint with both."""
    model: Any = trainer.model
    param = next(model.parameters())
    images = dataset.images.to(param.device, param.dtype)
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


@dataclass
class Run:
    """A trained run loaded for sampling / evaluation."""

    cfg: Config
    model: Any  # a model family: loss, sample, log_prob, SAMPLERS
    dataset: Any
    step: int
    run_dir: Path
    ema: bool  # whether the EMA weights are loaded
    device: torch.device = torch.device("cpu")  # where the model is (sampling happens there)


def load_run(
    run_dir: str | Path,
    use_ema: bool | None = None,
    checkpoint: str | None = None,
    device: str | torch.device | None = "auto",
) -> Run:
    """Rebuild the model of ``run_dir`` from a checkpoint: ``checkpoint="last"`` (the latest)
    or ``"best"`` (the best evaluation during training, ``train.eval_every``); by default the
    run's ``sample.checkpoint``. EMA weights unless ``use_ema=False`` or ``sample.use_ema``
    is false (a best checkpoint holds the weights that were evaluated). The model goes to
    ``device`` (``auto``: CUDA, else MPS, else the CPU), whatever device trained it."""
    run_dir = Path(run_dir)
    try:
        target = resolve_device(device, "--device")
    except DeviceError as err:
        raise ConfigError(str(err)) from None
    ckpt = load_checkpoint(run_dir)
    if "config" not in ckpt.meta:
        raise ConfigError(f"checkpoint {ckpt.path} has no config; it was not written by genlab train")
    cfg = build_config(ckpt.meta["config"])
    checkpoint = checkpoint or cfg.sample.checkpoint
    if checkpoint not in ("last", "best"):
        raise ConfigError(f"--checkpoint must be last or best, got {checkpoint!r}")
    if checkpoint == "best":
        if not has_best(run_dir):
            raise ConfigError(
                f"{run_dir} has no best checkpoint; train with train.eval_every > 0 or use --checkpoint last"
            )
        ckpt = load_checkpoint(run_dir / BEST_DIRNAME)
    use_ema = cfg.sample.use_ema if use_ema is None else use_ema
    dataset = build_dataset(cfg.data)
    model = build_model(cfg, data_shape(dataset), getattr(dataset, "num_classes", None))
    weights = "ema" if use_ema and "ema" in ckpt.tensors else "model"
    try:
        model.load_state_dict(EMA.weights(ckpt.tensors[weights]))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(f"checkpoint {ckpt.path} does not match its config's model ({first})") from None
    model.to(target).eval()
    ema = weights == "ema" or bool(ckpt.meta.get("ema", False))  # a best checkpoint says which it kept
    if hasattr(model, "fit_prior") and not bool(model.prior_fitted):
        # a VQ-VAE run stopped before its code prior was fitted: fit it now, as training would
        model.fit_prior(dataset.images.to(target, next(model.parameters()).dtype))
    return Run(cfg=cfg, model=model, dataset=dataset, step=ckpt.step, run_dir=run_dir, ema=ema, device=target)


def sampler_options(
    sampler: str, sc: SampleConfig, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The options a sampler takes, from the run's sample config and explicit overrides."""
    keys = {"ddim": ("eta",), "extension": ("noise",), "pc": ("snr",)}.get(sampler, ())
    values = {k: getattr(sc, k) for k in keys}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in keys:
            raise ConfigError(f"--{key} does not apply to sampler {sampler!r}")
        values[key] = value
    return values


def generate(
    run: Run,
    n: int,
    solver: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    return_trajectory: bool = False,
    sampler: str | None = None,
    label: int | None = None,
    guidance: float | None = None,
    cond: Conditioning | None = None,
    **options: Any,
) -> Solution:
    """Sample n points from a loaded run (defaults from the run's sample config).

    ``options`` override the sampler's settings (eta for ddim, noise for extension, snr for pc);
    ``label`` / ``guidance`` condition a class-conditional run, or pass a prepared ``cond``
    (it also carries the corrupted inputs of a data-coupling run).

    Sampling runs on the run's device with a generator made there (so a seed draws other
    numbers on a GPU than on the CPU); the solution comes back on the CPU, once, for the
    files, figures and metrics that use it.
    """
    sc = run.cfg.sample
    sampler = sampler or sc.sampler or run.model.SAMPLERS[0]
    if sampler not in run.model.SAMPLERS:
        raise ConfigError(
            f"sampler {sampler!r} is not available for model.family={run.cfg.model.family}; "
            f"choose one of: {', '.join(run.model.SAMPLERS)}"
        )
    gen = make_generator(run.device, sc.seed if seed is None else seed)
    opts = sampler_options(sampler, sc, options)
    cond = cond if cond is not None else run_conditioning(run, n, label, guidance)
    extra: dict[str, Any] = {}
    if cond.y is not None:
        extra.update(y=cond.y.to(run.device), guidance=cond.guidance)
    if cond.x0 is not None:
        extra["x0"] = cond.x0.to(run.device)
    sol = run.model.sample(
        n,
        solver or sc.solver,
        steps or sc.steps,
        gen,
        return_trajectory=return_trajectory,
        sampler=sampler,
        **extra,
        **opts,
    )
    traj = sol.trajectory.cpu() if sol.trajectory is not None else None
    return dataclasses.replace(sol, x=sol.x.cpu(), times=sol.times.cpu(), trajectory=traj)


def sample_to_file(
    run_dir: str | Path,
    n: int,
    out: str | Path,
    solver: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    sampler: str | None = None,
    label: int | None = None,
    guidance: float | None = None,
    checkpoint: str | None = None,
    device: str | torch.device | None = "auto",
    **options: Any,
) -> Path:
    """Write n samples to ``out``: ``.npy`` (array) or ``.png`` (scatter or image grid; for a
    data-coupling run the inputs, samples and true images side by side). A data-coupling run
    also writes its inputs next to a ``.npy`` as ``<name>.inputs.npy``."""
    out = Path(out)
    if out.suffix not in (".npy", ".png"):
        raise ConfigError(f"--out must end in .npy or .png, got {out.name!r}")
    run = load_run(run_dir, checkpoint=checkpoint, device=device)
    cond = run_conditioning(run, n, label, guidance)
    x = generate(run, n, solver, steps, seed, sampler=sampler, cond=cond, **options).x
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, x.numpy())
        if cond.x0 is not None:
            np.save(out.with_suffix(".inputs.npy"), cond.x0.numpy())
        return out
    from genlab import viz

    if cond.x0 is not None:
        k = min(n, 16)
        return Path(viz.plot_conditional_samples(cond.x0[:k], x[:k], cond.truth[:k], out))
    if isinstance(run.dataset, ImageDataset):
        return Path(viz.plot_image_grid(x, out))
    ref = run.dataset.sample(n, torch.Generator().manual_seed(0))
    return Path(viz.plot_samples_vs_data(x, ref, out))


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
