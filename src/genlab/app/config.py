"""Run configuration: typed dataclasses, YAML files and validated dotted overrides.

A configuration file is YAML with the sections below; any field may be overridden on the
command line as ``section.field=value`` (``model.net.width=256``). Unknown keys and values
of the wrong type raise :class:`ConfigError` with a one-line message that lists what is
valid, before anything is built.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from genlab._validate import ConfigError, check_choice, check_min
from genlab.app.overrides import (
    MISSING,
    family_defaults,
    foreign_override,
    lookup,
    parse_override,
    set_dotted,
    switch_family,
    without_foreign_keys,
)
from genlab.devices import DEVICE_HELP, PRECISIONS
from genlab.models import FAMILIES, FamilyConfig
from genlab.models.flow_matching import FlowMatchingConfig
from genlab.models.registry import plain_values
from genlab.training.config import TrainConfig
from genlab.training.optim import LR_SCHEDULES

__all__ = ["Config", "ConfigError", "DataConfig", "EvalConfig", "SampleConfig", "build_config", "load_config"]


@dataclass
class DataConfig:
    name: str = "moons"  # 2D toy (moons, 8gaussians, ...), digits, mnist, cifar10, array (your file)
    path: str | None = None  # array: .npy / .csv table, .npy / .npz / .pt images, a folder of pictures
    split: str = "train"  # split used for training (image data sets)
    test_path: str | None = None  # held-out data in the training file's format (else the test split)
    holdout: float = 0.1  # without a test split: this fraction of the file is held out of training
    holdout_seed: int = 0  # which rows are held out
    value_range: str = "auto"  # image pixels: auto (detected), 0-255, 0-1, -1-1
    standardize: bool = True  # your tables: train on z-scores per column, sample in the data's units
    resize: int | None = None  # images: resize (bilinear, antialiased) to this side first
    pad: int = 0  # images: then add this many pixels of -1 (black) on every side


@dataclass
class SampleConfig:
    sampler: str | None = None  # None: the family's default; ode, extension, ddim, dpm, em, pc, ...
    solver: str = "rk4"  # ode sampler: euler, midpoint, heun, rk4, dopri5
    steps: int = 50  # uniform steps on [0, 1] (output times for dopri5)
    n: int = 2000  # samples drawn by `genlab sample` / eval
    use_ema: bool = True  # sample with the EMA weights
    checkpoint: str = "last"  # last, or best (the best evaluation during training; train.eval_every)
    seed: int = 1234  # sampling seed
    eta: float = 0.0  # ddim: 0 deterministic, 1 DDPM-like noise
    noise: float = 0.0  # extension sampler: constant diffusion coefficient sigma_t >= 0
    snr: float = 0.16  # pc sampler: Langevin corrector signal-to-noise ratio
    label: int | None = None  # class-conditional: sample this class (None: all classes in turn; -1: none)
    guidance: float | None = None  # classifier-free guidance scale w (None: the conditional field)


@dataclass
class EvalConfig:
    n: int = 2000  # generated and reference samples
    # w2, mmd, nll, fd, fid, acc, straightness
    metrics: list[str] = field(default_factory=lambda: ["w2", "mmd"])


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: FamilyConfig = field(default_factory=FlowMatchingConfig)  # the section of model.family
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples become lists) suitable for YAML / JSON."""
        return plain_values(dataclasses.asdict(self))


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (list -> tuple)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key} must be null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # 1e-3 in a YAML file is a string to PyYAML
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin in (tuple, list):
        (item,) = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if isinstance(value, str) and item is str:  # metrics=w2,mmd
            value = [v for v in value.split(",") if v]
        if isinstance(value, (list, tuple)):
            items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
    elif origin is dict:
        _, val_tp = typing.get_args(tp)
        if isinstance(value, dict):
            return {str(k): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a nested dict, validating keys and types."""
    where = prefix or "the config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"unknown key {key!r}; valid keys under {where}: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if tp is FamilyConfig:
            kwargs[name] = _build_model_section(value, key)
        elif dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key)  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(value, tp, key)
    return cls(**kwargs)


def _build_model_section(data: Any, prefix: str) -> FamilyConfig:
    """The ``model`` section as the config dataclass of its ``family`` (flow_matching if unset).

    Configs written before the sections were split per family hold every family's keys; a key
    the family does not read is dropped when it holds the value every run wrote by default,
    and refused in one line otherwise (it would be silently ignored)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix} must be a mapping of keys to values, got {data!r}")
    family = data.get("family", "flow_matching")
    if not isinstance(family, str):
        raise ConfigError(f"{prefix}.family must be a string, got {family!r}")
    check_choice(f"{prefix}.family", family, FAMILIES)
    cls = FAMILIES[family].config
    return _build(cls, without_foreign_keys(data, cls, family, prefix, family_defaults()), prefix)  # type: ignore[no-any-return]


def build_config(
    data: dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = (), shared: bool = False
) -> Config:
    """Config from a nested dict plus dotted overrides, fully validated. A model setting of
    another family is refused, or with ``shared`` (overrides given to runs of several
    families, as ``compare`` does) skipped with a warning."""
    tree = plain_values(dict(data or {}))
    parsed = [parse_override(text) for text in overrides]
    switch_family(tree, [value for key, value in parsed if key == "model.family"])
    section = tree.get("model")
    family = section.get("family", "flow_matching") if isinstance(section, dict) else "flow_matching"
    family = next((v for k, v in reversed(parsed) if k == "model.family"), family)
    for key, value in parsed:
        if not foreign_override(family, key, value, shared):
            set_dotted(tree, key, value)
    cfg = _build(Config, tree, "")
    validate(cfg)
    return cfg


#: settings whose default changed: a saved run that does not record one was trained with the
#: value here (the sinusoidal time features of the MLP were those of 1000 t before)
#: settings that runs saved before them lack, with the value those runs were trained with:
#: (family the setting belongs to, or None for any) -> {dotted key: value}
LEGACY_DEFAULTS: dict[str | None, dict[str, Any]] = {
    None: {"model.net.time_scale": 1000.0},
    "vqvae": {"model.ae.prior": "independent"},  # the PixelCNN prior came later
    "vae": {"model.ae.prior": "standard"},  # the fitted mixture prior came later
}


def saved_run_config(data: dict[str, Any] | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The config of a saved run (its checkpoint's or its ``config.yaml``), with the settings
    it predates filled in with the values it was trained with (:data:`LEGACY_DEFAULTS`), not
    today's defaults, so that an old run rebuilds the network it trained."""
    tree = plain_values(dict(data or {}))
    model = tree.get("model")
    family = model.get("family", "flow_matching") if isinstance(model, dict) else None
    for scope, settings in LEGACY_DEFAULTS.items():
        if scope is not None and scope != family:
            continue
        for dotted, value in settings.items():
            parent, _, key = dotted.rpartition(".")
            section = lookup(tree, parent)
            if scope is not None and section is MISSING:  # the family's section, left at its defaults
                set_dotted(tree, dotted, value)
            elif isinstance(section, dict) and key not in section:
                section[key] = value
    return build_config(tree, overrides)


def load_config(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), shared: bool = False
) -> Config:
    """Read a YAML config file and apply overrides; a missing or corrupt file is a ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found; see configs/ for examples")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {str(p)!r} is not valid YAML{where}") from None
    if data is None:  # empty, or comments only: an empty file is more likely a mistake than a choice
        raise ConfigError(
            f"config file {str(p)!r} is empty; give at least one section (data, model, train, ...), "
            "e.g. copy one of configs/"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping (sections data, model, ...)")
    return build_config(data, overrides, shared)


def validate(cfg: Config) -> None:
    """Value checks that need no data: names from the registries, positive sizes."""
    from genlab.metrics import SAMPLE_METRICS
    from genlab.solvers import SOLVERS

    cfg.model.validate()
    if not 0.0 <= cfg.data.holdout < 1.0:
        raise ConfigError(f"data.holdout must be a fraction in [0, 1), got {cfg.data.holdout}")
    check_choice("data.value_range", cfg.data.value_range, ["auto", "0-255", "0-1", "-1-1"])
    check_min("data.resize", cfg.data.resize, 1)
    check_min("data.pad", cfg.data.pad, 0)
    samplers = FAMILIES[cfg.model.family].samplers
    if cfg.sample.sampler is not None and cfg.sample.sampler not in samplers:
        raise ConfigError(
            f"sample.sampler={cfg.sample.sampler!r} is not available for model.family="
            f"{cfg.model.family}; choose one of: {', '.join(samplers)}"
        )
    validate_sample(cfg)
    check_choice("train.optimizer", cfg.train.optimizer, ["adam", "adamw", "rmsprop"])
    if len(cfg.train.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.train.betas):
        raise ConfigError(f"train.betas must be two numbers in [0, 1), got {list(cfg.train.betas)}")
    check_min("train.d_lr", cfg.train.d_lr, 0.0, strict=True)
    check_min("train.eval_every", cfg.train.eval_every, 0)
    check_min("train.eval_n", cfg.train.eval_n, 2)
    if cfg.train.eval_metric is not None:
        check_choice("train.eval_metric", cfg.train.eval_metric, ["w2", "mmd", "fd"])
    check_choice("train.nonfinite", cfg.train.nonfinite, ["stop", "skip"])
    check_choice("train.precision", cfg.train.precision, PRECISIONS)
    check_device_name("train.device", cfg.train.device)
    if isinstance(cfg.train.compile, str):
        check_choice("train.compile", cfg.train.compile, COMPILE_MODES)
    check_choice("sample.solver", cfg.sample.solver, SOLVERS)
    for key, value in [
        ("train.steps", cfg.train.steps),
        ("train.batch_size", cfg.train.batch_size),
        ("train.log_every", cfg.train.log_every),
        ("train.ckpt_every", cfg.train.ckpt_every),
        ("sample.steps", cfg.sample.steps),
        ("sample.n", cfg.sample.n),
        ("eval.n", cfg.eval.n),
    ]:
        check_min(key, value, 1)
    check_min("train.lr", cfg.train.lr, 0.0, strict=True)
    rates: list[tuple[str, float | None]] = [("train.lr", cfg.train.lr), ("train.d_lr", cfg.train.d_lr)]
    for key, rate in rates:
        if rate is not None and rate == float("inf"):
            raise ConfigError(f"{key} must be a finite number, got {rate}")
    check_min("train.warmup_steps", cfg.train.warmup_steps, 0)
    check_choice("train.lr_schedule", cfg.train.lr_schedule, LR_SCHEDULES)
    if not 0.0 <= cfg.train.lr_min_factor <= 1.0:
        raise ConfigError(f"train.lr_min_factor must be in [0, 1], got {cfg.train.lr_min_factor}")
    check_min("train.grad_clip", cfg.train.grad_clip, 0.0, strict=True)
    check_min("train.keep_checkpoints", cfg.train.keep_checkpoints, 1)
    if not 0.0 <= cfg.train.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must be in [0, 1), got {cfg.train.ema_decay}")
    for name in cfg.eval.metrics:
        check_choice("eval.metrics", name, [*SAMPLE_METRICS, *RUN_METRICS])


def validate_sample(cfg: Config) -> None:
    """The sample section, and its settings that need a class-conditional model."""
    sample = cfg.sample
    check_min("sample.noise", sample.noise, 0.0)
    check_min("sample.snr", sample.snr, 0.0, strict=True)
    if not 0.0 <= sample.eta <= 1.0:
        raise ConfigError(f"sample.eta must be in [0, 1], got {sample.eta}")
    check_choice("sample.checkpoint", sample.checkpoint, ["last", "best"])
    conditional: list[tuple[str, float | int | None]] = [
        ("sample.guidance", sample.guidance),
        ("sample.label", sample.label),
    ]
    for key, setting in conditional:
        if setting is not None and not cfg.model.class_conditional:
            raise ConfigError(
                f"{key}={setting} needs a class-conditional model (model.net.class_conditional=true)"
            )
    if sample.guidance is not None and sample.guidance < 0:
        raise ConfigError(f"sample.guidance must be >= 0, got {sample.guidance}")
    if sample.label is not None and sample.label < -1:
        raise ConfigError(f"sample.label must be a class index >= 0 (or -1 for none), got {sample.label}")


#: modes of torch.compile that train.compile accepts besides true / false
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_device_name(key: str, value: str) -> None:
    """The device setting is one of auto, cpu, cuda, cuda:N, mps (whether this machine has
    it is checked when a run starts: a GPU run's config stays valid on a CPU machine)."""
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value.strip().lower()):
        raise ConfigError(f"{key}={value!r} is not a device; use {DEVICE_HELP}")


#: metrics computed from a run rather than from two sample sets (see evaluation.evaluate)
RUN_METRICS = ("fd", "fid", "nll", "acc", "straightness")
