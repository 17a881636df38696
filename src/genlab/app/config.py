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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from genlab.devices import DEVICE_HELP, PRECISIONS
from genlab.training.config import TrainConfig


class ConfigError(ValueError):
    """A configuration problem the user can fix (unknown key, wrong type, bad file)."""


@dataclass
class DataConfig:
    name: str = "moons"  # 2D toy (moons, 8gaussians, ...), digits, mnist, cifar10, or array
    path: str | None = None  # .npy/.csv file for name=array; directory for mnist / cifar10
    split: str = "train"  # split used for training (image data sets)


@dataclass
class NetConfig:
    kind: str = "mlp"  # mlp (vectors), unet (images); vae/gan images: conv, style (GAN generator)
    width: int = 256  # mlp: hidden width
    depth: int = 4  # mlp: number of hidden layers
    activation: str = "silu"  # mlp: silu, relu, gelu, tanh, elu, softplus
    time_embedding: str = "sinusoidal"  # sinusoidal or fourier
    time_dim: int = 64  # size of the time features
    base_channels: int = 32  # unet: channels at full resolution
    channel_mults: tuple[int, ...] = (1, 2)  # unet: channel multiplier per resolution
    num_res_blocks: int = 1  # unet: residual blocks per resolution
    attention: bool = False  # unet: self-attention at the lowest resolution
    dropout: float = 0.0  # unet: dropout in residual blocks
    class_conditional: bool = False  # condition on labels (with a null token for guidance)


@dataclass
class AutoencoderConfig:
    latent_dim: int | None = None  # vae: size of z (None: 2 for vectors, 16 for images)
    likelihood: str = "gaussian"  # vae: gaussian or bernoulli (binarised images)
    decoder_std: float | None = None  # vae: fixed std of the Gaussian decoder (None: learned)
    beta: float | None = None  # vae: KL weight (None: 1); vqvae: commitment weight (None: 0.25)
    iwae_k: int = 64  # vae: importance samples of the NLL estimate (metric nll)
    num_codes: int = 32  # vqvae: codebook size K
    code_dim: int = 16  # vqvae: dimension of a code
    downsample: int = 2  # vqvae: the code grid is (H / downsample) x (W / downsample)
    codebook_lr_scale: float = 10.0  # vqvae: learning-rate multiplier of the codebook


@dataclass
class GANConfig:
    loss: str = "nonsaturating"  # minimax, nonsaturating, lsgan, wgan, wgan-gp
    loss_args: dict[str, float] = field(default_factory=dict)  # lsgan: {a: 0, b: 1, c: 1}
    latent_dim: int = 32  # size of z
    n_critic: int = 1  # discriminator updates per generator update (wgan: 5)
    clip: float = 0.01  # wgan: critic weights clamped to [-clip, clip]
    gp_weight: float = 10.0  # wgan-gp: gradient-penalty weight lambda
    l1_weight: float = 100.0  # pix2pix: weight of the L1 term
    cycle_weight: float = 10.0  # cyclegan: weight of the cycle-consistency term
    corruption: str = "superres"  # pix2pix: input made from the target (superres, inpaint, denoise)
    corruption_args: dict[str, int | float | str] = field(default_factory=dict)  # {factor: 2}
    domain: str = "inverted"  # cyclegan: domain A, a 2D toy set or inverted / rotated images


@dataclass
class ModelConfig:
    family: str = "flow_matching"  # flow_matching, diffusion, ddpm, cnf, realnvp, vae, vqvae, gan, ...
    path: str = "linear"  # flow matching: linear, ot, vp, ve, cosine, polynomial, ddpm
    path_args: dict[str, float] = field(default_factory=dict)  # e.g. {sigma_min: 0.01}
    prediction: str | None = None  # network output: velocity, noise, data, score (None: family default)
    sde: str = "vp"  # diffusion: ve, vp, subvp
    sde_args: dict[str, float] = field(default_factory=dict)  # e.g. {sigma_max: 10.0}
    weighting: str = "sigma2"  # diffusion: sigma2, likelihood, none
    num_steps: int = 1000  # ddpm: number of discrete steps T
    cnf_steps: int = 8  # cnf: RK4 steps per maximum-likelihood training solve
    divergence: str = "hutchinson"  # cnf training: hutchinson or exact
    kinetic: float = 0.0  # cnf: weight of the kinetic-energy regulariser
    flow_layers: int = 8  # realnvp: coupling layers
    flow_hidden: int = 128  # realnvp: conditioner width
    coupling: str = "independent"  # flow matching: independent, ot, sb, inpaint, superres, denoise
    coupling_args: dict[str, int | float | bool | str] = field(
        default_factory=dict
    )  # {method: exact}, {sigma: 0.5}
    source: str = "gaussian"  # flow matching: gaussian, or a 2D toy data set (8gaussians -> moons)
    label_dropout: float = 0.1  # class-conditional nets: probability of the "no label" token (guidance)
    reflow_pairs: str | None = None  # flow matching: train on the pairs file `genlab reflow` wrote
    net: NetConfig = field(default_factory=NetConfig)  # velocity / score network (not realnvp)
    ae: AutoencoderConfig = field(default_factory=AutoencoderConfig)  # vae, vqvae
    gan: GANConfig = field(default_factory=GANConfig)  # gan, pix2pix, cyclegan


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
    metrics: list[str] = field(default_factory=lambda: ["w2", "mmd"])  # w2, mmd, nll, fd, acc, straightness


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples become lists) suitable for YAML / JSON."""
        return _plain(dataclasses.asdict(self))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


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
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key)  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(value, tp, key)
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


_EXPONENT_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.steps=200"`` -> ("train.steps", 200); the value is parsed as YAML."""
    if "=" not in text or text.startswith("="):
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. train.steps=200")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    return key.strip(), value


def build_config(data: dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Config from a nested dict plus dotted overrides, fully validated."""
    tree = _plain(dict(data or {}))
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    cfg = _build(Config, tree, "")
    validate(cfg)
    return cfg


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
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
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping (sections data, model, ...)")
    return build_config(data, overrides)


def _check_choice(key: str, value: str, valid: typing.Iterable[str]) -> None:
    valid = sorted(valid)
    if value not in valid:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(valid)}")


def _check_min(key: str, value: float | int | None, low: float, strict: bool = False) -> None:
    if value is None:
        return
    if value != value:  # NaN
        raise ConfigError(f"{key} must be a number, got {value}")
    if value < low or (strict and value == low):
        op = ">" if strict else ">="
        raise ConfigError(f"{key} must be {op} {low}, got {value}")


def validate(cfg: Config) -> None:
    """Value checks that need no data: names from the registries, positive sizes."""
    from genlab.models import FAMILIES
    from genlab.paths import SCHEDULES
    from genlab.paths.gaussian import DEPRECATED_PREDICTIONS
    from genlab.paths.sde import SDES
    from genlab.solvers import SOLVERS

    _check_choice("model.family", cfg.model.family, FAMILIES)
    _check_choice("model.path", cfg.model.path, SCHEDULES)
    _check_choice("model.sde", cfg.model.sde, SDES)
    _check_choice("model.weighting", cfg.model.weighting, ["sigma2", "likelihood", "none"])
    if cfg.model.prediction in DEPRECATED_PREDICTIONS:  # saved runs and old configs keep loading
        new = DEPRECATED_PREDICTIONS[cfg.model.prediction]
        warnings.warn(
            f"model.prediction={cfg.model.prediction} is now called {new} (genlab's x_0 is the noise, "
            f"x_1 the data); read as model.prediction={new}",
            FutureWarning,
            stacklevel=2,
        )
        cfg.model.prediction = new
    family = FAMILIES[cfg.model.family]
    if cfg.model.prediction is not None and family.predictions:  # the others predict no path quantity
        _check_choice("model.prediction", cfg.model.prediction, family.predictions)
    samplers = family.samplers
    if cfg.sample.sampler is not None and cfg.sample.sampler not in samplers:
        raise ConfigError(
            f"sample.sampler={cfg.sample.sampler!r} is not available for model.family="
            f"{cfg.model.family}; choose one of: {', '.join(samplers)}"
        )
    _check_min("model.num_steps", cfg.model.num_steps, 2)
    _check_min("model.cnf_steps", cfg.model.cnf_steps, 1)
    _check_min("model.kinetic", cfg.model.kinetic, 0.0)
    _check_min("model.flow_layers", cfg.model.flow_layers, 2)
    _check_min("model.flow_hidden", cfg.model.flow_hidden, 1)
    _check_choice("model.divergence", cfg.model.divergence, ["hutchinson", "exact"])
    _check_min("sample.noise", cfg.sample.noise, 0.0)
    _check_min("sample.snr", cfg.sample.snr, 0.0, strict=True)
    if not 0.0 <= cfg.sample.eta <= 1.0:
        raise ConfigError(f"sample.eta must be in [0, 1], got {cfg.sample.eta}")
    _check_choice("model.net.kind", cfg.model.net.kind, ["mlp", "unet", "conv", "style"])
    _check_choice("train.optimizer", cfg.train.optimizer, ["adam", "adamw", "rmsprop"])
    if len(cfg.train.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.train.betas):
        raise ConfigError(f"train.betas must be two numbers in [0, 1), got {list(cfg.train.betas)}")
    _check_min("train.d_lr", cfg.train.d_lr, 0.0, strict=True)
    _check_min("train.eval_every", cfg.train.eval_every, 0)
    _check_min("train.eval_n", cfg.train.eval_n, 2)
    if cfg.train.eval_metric is not None:
        _check_choice("train.eval_metric", cfg.train.eval_metric, ["w2", "mmd", "fd"])
    _check_choice("sample.checkpoint", cfg.sample.checkpoint, ["last", "best"])
    _check_choice("train.nonfinite", cfg.train.nonfinite, ["stop", "skip"])
    _check_choice("train.precision", cfg.train.precision, PRECISIONS)
    check_device_name("train.device", cfg.train.device)
    if isinstance(cfg.train.compile, str):
        _check_choice("train.compile", cfg.train.compile, COMPILE_MODES)
    _check_choice("sample.solver", cfg.sample.solver, SOLVERS)
    for key, value in [
        ("train.steps", cfg.train.steps),
        ("train.batch_size", cfg.train.batch_size),
        ("train.log_every", cfg.train.log_every),
        ("train.ckpt_every", cfg.train.ckpt_every),
        ("sample.steps", cfg.sample.steps),
        ("sample.n", cfg.sample.n),
        ("eval.n", cfg.eval.n),
        ("model.net.width", cfg.model.net.width),
        ("model.net.depth", cfg.model.net.depth),
    ]:
        _check_min(key, value, 1)
    _check_min("train.lr", cfg.train.lr, 0.0, strict=True)
    _check_min("train.warmup_steps", cfg.train.warmup_steps, 0)
    _check_min("train.grad_clip", cfg.train.grad_clip, 0.0, strict=True)
    _check_min("train.keep_checkpoints", cfg.train.keep_checkpoints, 1)
    if not 0.0 <= cfg.train.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must be in [0, 1), got {cfg.train.ema_decay}")
    from genlab.metrics import SAMPLE_METRICS

    for name in cfg.eval.metrics:
        _check_choice("eval.metrics", name, [*SAMPLE_METRICS, *RUN_METRICS])
    _validate_couplings(cfg)
    _validate_latent_families(cfg)


#: modes of torch.compile that train.compile accepts besides true / false
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_device_name(key: str, value: str) -> None:
    """The device setting is one of auto, cpu, cuda, cuda:N, mps (whether this machine has
    it is checked when a run starts: a GPU run's config stays valid on a CPU machine)."""
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value.strip().lower()):
        raise ConfigError(f"{key}={value!r} is not a device; use {DEVICE_HELP}")


def _validate_latent_families(cfg: Config) -> None:
    """Ranges and names of the VAE / VQ-VAE (model.ae) and GAN (model.gan) settings."""
    from genlab.data import TOY_DATASETS
    from genlab.models.gan_losses import GAN_LOSSES
    from genlab.paths import CORRUPTIONS

    ae, gan = cfg.model.ae, cfg.model.gan
    _check_min("model.ae.latent_dim", ae.latent_dim, 1)
    _check_choice("model.ae.likelihood", ae.likelihood, ["gaussian", "bernoulli"])
    _check_min("model.ae.decoder_std", ae.decoder_std, 0.0, strict=True)
    _check_min("model.ae.beta", ae.beta, 0.0)
    _check_min("model.ae.iwae_k", ae.iwae_k, 1)
    _check_min("model.ae.num_codes", ae.num_codes, 2)
    _check_min("model.ae.code_dim", ae.code_dim, 1)
    _check_choice("model.ae.downsample", str(ae.downsample), ["2", "4"])
    _check_min("model.ae.codebook_lr_scale", ae.codebook_lr_scale, 0.0, strict=True)
    if ae.likelihood == "bernoulli" and ae.decoder_std is not None:
        raise ConfigError("model.ae.decoder_std applies to model.ae.likelihood=gaussian only")
    _check_choice("model.gan.loss", gan.loss, GAN_LOSSES)
    _check_min("model.gan.latent_dim", gan.latent_dim, 1)
    _check_min("model.gan.n_critic", gan.n_critic, 1)
    _check_min("model.gan.clip", gan.clip, 0.0, strict=True)
    _check_min("model.gan.gp_weight", gan.gp_weight, 0.0, strict=True)
    _check_min("model.gan.l1_weight", gan.l1_weight, 0.0)
    _check_min("model.gan.cycle_weight", gan.cycle_weight, 0.0)
    _check_choice("model.gan.corruption", gan.corruption, CORRUPTIONS)
    _check_choice("model.gan.domain", gan.domain, ["inverted", "rotated", *TOY_DATASETS])


#: metrics computed from a run rather than from two sample sets (see evaluation.evaluate)
RUN_METRICS = ("fd", "nll", "acc", "straightness")


def _validate_couplings(cfg: Config) -> None:
    """Couplings, sources, label dropout and guidance settings."""
    from genlab.data import TOY_DATASETS
    from genlab.paths import COUPLINGS

    m = cfg.model
    _check_choice("model.coupling", m.coupling, COUPLINGS)
    _check_choice("model.source", m.source, ["gaussian", *TOY_DATASETS])
    if not 0.0 <= m.label_dropout < 1.0:
        raise ConfigError(f"model.label_dropout must be in [0, 1), got {m.label_dropout}")
    if m.family != "flow_matching":
        for key, value, default in [
            ("coupling", m.coupling, "independent"),
            ("source", m.source, "gaussian"),
            ("reflow_pairs", m.reflow_pairs, None),
        ]:
            if value != default:
                raise ConfigError(
                    f"model.{key}={value} applies to model.family=flow_matching only "
                    f"(got model.family={m.family})"
                )
    if m.coupling == "sb" and m.path != "linear":
        raise ConfigError(
            "model.coupling=sb trains on the Brownian-bridge path around the linear one; "
            f"leave model.path=linear (got {m.path})"
        )
    if m.coupling_args.get("label_aware") and not m.net.class_conditional:
        raise ConfigError("model.coupling_args.label_aware=true needs model.net.class_conditional=true")
    conditional: list[tuple[str, float | int | None]] = [
        ("sample.guidance", cfg.sample.guidance),
        ("sample.label", cfg.sample.label),
    ]
    for key, setting in conditional:
        if setting is not None and not m.net.class_conditional:
            raise ConfigError(
                f"{key}={setting} needs a class-conditional model (model.net.class_conditional=true)"
            )
    if cfg.sample.guidance is not None and cfg.sample.guidance < 0:
        raise ConfigError(f"sample.guidance must be >= 0, got {cfg.sample.guidance}")
    if cfg.sample.label is not None and cfg.sample.label < -1:
        raise ConfigError(f"sample.label must be a class index >= 0 (or -1 for none), got {cfg.sample.label}")
