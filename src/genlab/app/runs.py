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
from genlab.app.config import Config, ConfigError, SampleConfig, build_config, load_config, saved_run_config
from genlab.app.datasets import prior_fit_data, read_standardization
from genlab.data.images import ImageDataset
from genlab.data.tabular import Standardization
from genlab.devices import DeviceError, make_generator, resolve_device
from genlab.models.base import Solution
from genlab.training.checkpoint import load_checkpoint
from genlab.training.ema import EMA
from genlab.training.trainer import BEST_DIRNAME, has_best


def packaged_configs() -> list[str]:
    """Names of the configs shipped with genlab (also under configs/ in the repository)."""
    root = resources.files("genlab") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve_config(
    name_or_path: str, overrides: list[str] | tuple[str, ...] = (), shared: bool = False
) -> Config:
    """Load a YAML file, or a packaged config by name (``moons``, ``digits``, ...); ``shared``
    overrides skip the model settings of other families (see :func:`build_config`)."""
    path = Path(name_or_path)
    if not path.exists() and name_or_path in packaged_configs():
        text = (resources.files("genlab") / "configs" / f"{name_or_path}.yaml").read_text()
        return build_config(yaml.safe_load(text), overrides, shared)
    if not path.exists():
        raise ConfigError(
            f"config {name_or_path!r} not found; give a YAML file or one of: {', '.join(packaged_configs())}"
        )
    return load_config(path, overrides, shared)


def saved_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The config a run was trained with (from its last checkpoint), with ``overrides`` applied:
    what ``genlab train ... --resume`` continues (not the packaged config of the same name)."""
    try:
        ckpt = load_checkpoint(run_dir)
    except (OSError, ValueError) as err:
        raise ConfigError(f"--resume: {err}") from None
    if "config" not in ckpt.meta:
        raise ConfigError(f"checkpoint {ckpt.path} has no config; it was not written by genlab train")
    return saved_run_config(ckpt.meta["config"], overrides)


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
    #: a model of a user table trained on z-scores: samples are mapped back to the data's units
    standardization: Standardization | None = None


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
    cfg = saved_run_config(ckpt.meta["config"])
    checkpoint = checkpoint or cfg.sample.checkpoint
    if checkpoint not in ("last", "best"):
        raise ConfigError(f"--checkpoint must be last or best, got {checkpoint!r}")
    if checkpoint == "best":
        if not has_best(run_dir):
            raise ConfigError(
                f"{run_dir} has no best checkpoint; train with train.eval_every > 0 or use --checkpoint last"
            )
        ckpt = load_checkpoint(run_dir / BEST_DIRNAME)
    _check_belongs_to_run(run_dir, ckpt)
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
    if getattr(model, "fits_prior", False) and not bool(model.prior_fitted):  # type: ignore[operator]
        # a run stopped before its prior was fitted: fit it now, as training would
        model.fit_prior(prior_fit_data(dataset, next(model.parameters())))  # type: ignore[operator]
    scale = read_standardization(run_dir)
    return Run(cfg, model, dataset, ckpt.step, run_dir, ema, target, scale)


def _check_belongs_to_run(run_dir: Path, ckpt: Any) -> None:
    """A checkpoint's model is the one the run's ``config.yaml`` describes: a checkpoint of
    another run (another family, another network) copied into ``checkpoints/`` is refused, not
    sampled as if it were this run's. Runs without a readable ``config.yaml`` are not checked."""
    try:
        recorded = saved_run_config(yaml.safe_load((run_dir / "config.yaml").read_text())).model
    except (OSError, yaml.YAMLError, ConfigError):
        return
    try:
        model = saved_run_config(ckpt.meta.get("config")).model
    except ConfigError as err:
        raise ConfigError(f"checkpoint {ckpt.path} holds an invalid config ({err})") from None
    if model.family != recorded.family:
        what = f"model.family={model.family}, not {recorded.family} as the run's config.yaml says"
    elif model.to_dict() != recorded.to_dict():
        what = "another model than the run's config.yaml describes"
    else:
        return
    raise ConfigError(
        f"checkpoint {ckpt.path} is of {what}: it belongs to another run; "
        "remove it or sample the run it came from"
    )


#: the settings of SampleConfig each sampler reads besides sampler, solver, steps and seed
SAMPLER_OPTIONS = {"ddim": ("eta",), "extension": ("noise",), "pc": ("snr",)}
#: samplers that read neither ``steps`` nor ``solver``, and why
STEPLESS_SAMPLERS = {
    "ddpm": "it takes every one of the model's T steps; use --sampler ddim or dpm for fewer",
    "direct": "the model draws in one pass",
    "exact": "the flow is inverted in one pass",
}


def sample_settings(cfg: Config, **given: Any) -> SampleConfig:
    """A run's ``sample`` section with the settings given (``None``: the run's own), checked
    like the config: the sampler is resolved (the family's default when unset) and a setting
    that does not apply to it is refused. ``genlab sample`` / ``eval`` pass their flags here.

    >>> cfg = resolve_config("moons")
    >>> s = sample_settings(cfg, steps=10, sampler="extension", noise=0.5)
    >>> (s.sampler, s.steps, s.noise, s.solver)
    ('extension', 10, 0.5, 'rk4')
    """
    from genlab.app.config import validate_sample
    from genlab.models import FAMILIES

    names = [f.name for f in dataclasses.fields(SampleConfig)]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ConfigError(f"{unknown[0]!r} is not a sample setting; valid: {', '.join(names)}")
    chosen = {k: v for k, v in given.items() if v is not None}
    sample = dataclasses.replace(cfg.sample, **chosen)
    samplers = FAMILIES[cfg.model.family].samplers
    sample.sampler = sample.sampler or samplers[0]
    if sample.sampler not in samplers:
        raise ConfigError(
            f"sampler {sample.sampler!r} is not available for model.family={cfg.model.family}; "
            f"choose one of: {', '.join(samplers)}"
        )
    for key in ("eta", "noise", "snr"):
        if key in chosen and key not in SAMPLER_OPTIONS.get(sample.sampler, ()):
            raise ConfigError(f"--{key} does not apply to sampler {sample.sampler!r}")
    for key in ("steps", "solver"):
        if key in chosen and sample.sampler in STEPLESS_SAMPLERS:
            why = STEPLESS_SAMPLERS[sample.sampler]
            raise ConfigError(f"--{key} does not apply to sampler {sample.sampler!r}: {why}")
    validate_sample(dataclasses.replace(cfg, sample=sample))
    return sample


def generate(
    run: Run,
    n: int,
    sample: SampleConfig | None = None,
    *,
    return_trajectory: bool = False,
    cond: Conditioning | None = None,
) -> Solution:
    """Sample n points from a loaded run with the settings of ``sample`` (default: the run's
    own; see :func:`sample_settings`). ``cond`` gives prepared labels / guidance / inputs
    (default: from ``sample.label`` and ``sample.guidance``, and a data-coupling run's inputs).

    Sampling runs on the run's device with a generator made there (so a seed draws other
    numbers on a GPU than on the CPU); the solution comes back on the CPU, once, for the
    files, figures and metrics that use it.
    """
    sample = sample if sample is not None else sample_settings(run.cfg)
    sampler = sample.sampler or run.model.SAMPLERS[0]
    if sampler not in run.model.SAMPLERS:
        raise ConfigError(
            f"sampler {sampler!r} is not available for model.family={run.cfg.model.family}; "
            f"choose one of: {', '.join(run.model.SAMPLERS)}"
        )
    gen = make_generator(run.device, sample.seed)
    cond = cond if cond is not None else run_conditioning(run, n, sample.label, sample.guidance)
    extra: dict[str, Any] = {k: getattr(sample, k) for k in SAMPLER_OPTIONS.get(sampler, ())}
    if cond.y is not None:
        extra.update(y=cond.y.to(run.device), guidance=cond.guidance)
    if cond.x0 is not None:
        extra["x0"] = cond.x0.to(run.device)
    sol = run.model.sample(
        n, sample.solver, sample.steps, gen, return_trajectory=return_trajectory, sampler=sampler, **extra
    )
    x, traj = sol.x.cpu(), sol.trajectory.cpu() if sol.trajectory is not None else None
    if run.standardization is not None:  # back to the data's units
        x = run.standardization.undo(x)
        traj = None if traj is None else run.standardization.undo(traj)
    return dataclasses.replace(sol, x=x, times=sol.times.cpu(), trajectory=traj)


def as_run(
    run: Run | str | Path, checkpoint: str | None = None, device: str | torch.device | None = "auto"
) -> Run:
    """``run`` itself, or the run loaded from that directory."""
    return run if isinstance(run, Run) else load_run(run, checkpoint=checkpoint, device=device)


def sample_to_file(
    run: Run | str | Path,
    out: str | Path,
    sample: SampleConfig | None = None,
    *,
    checkpoint: str | None = None,
    device: str | torch.device | None = "auto",
) -> Path:
    """Write ``sample.n`` samples to ``out``: ``.npy`` (array) or ``.png`` (scatter or image
    grid; for a data-coupling run the inputs, samples and true images side by side). A
    data-coupling run also writes its inputs next to a ``.npy`` as ``<name>.inputs.npy``."""
    out = Path(out)
    if out.suffix not in (".npy", ".png"):
        raise ConfigError(f"--out must end in .npy or .png, got {out.name!r}")
    run = as_run(run, checkpoint, device)
    sample = sample if sample is not None else sample_settings(run.cfg)
    n = sample.n
    cond = run_conditioning(run, n, sample.label, sample.guidance)
    x = generate(run, n, sample, cond=cond).x
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
    if x.shape[1] != 2:
        return Path(viz.plot_pairs(x, ref, out))
    return Path(viz.plot_samples_vs_data(x, ref, out))
