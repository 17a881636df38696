"""Using a trained run: find a config, load a run's model, sample it, write samples
(training a run is in :mod:`genlab.app.train`, scoring it in :mod:`genlab.app.evaluation`).

A run directory holds ``config.yaml`` (the resolved config), ``checkpoints/``,
``metrics.jsonl``, ``tb/`` (TensorBoard) and, after evaluation, ``eval.json`` and
``figures/`` (drawn by :mod:`genlab.app.reporting`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from genlab.app.builders import build_dataset, build_model, data_shape
from genlab.app.conditioning import Conditioning, run_conditioning
from genlab.app.config import Config, ConfigError, SampleConfig, build_config, load_config
from genlab.data.images import ImageDataset
from genlab.devices import DeviceError, make_generator, resolve_device
from genlab.models.base import Solution
from genlab.training.checkpoint import load_checkpoint
from genlab.training.ema import EMA
from genlab.training.trainer import BEST_DIRNAME, has_best


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
    if hasattr(model, "fit_prior") and not bool(model.prior_fitted):  # type: ignore[operator]
        # a VQ-VAE run stopped before its code prior was fitted: fit it now, as training would
        model.fit_prior(dataset.images.to(target, next(model.parameters()).dtype))  # type: ignore[operator]
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

    if cond.x0 is not None and cond.truth is not None:
        k = min(n, 16)
        return Path(viz.plot_conditional_samples(cond.x0[:k], x[:k], cond.truth[:k], out))
    if isinstance(run.dataset, ImageDataset):
        return Path(viz.plot_image_grid(x, out))
    ref = run.dataset.sample(n, torch.Generator().manual_seed(0))
    return Path(viz.plot_samples_vs_data(x, ref, out))
