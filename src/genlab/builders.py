"""From a validated :class:`~genlab.config.Config` to data sets, networks and models."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from genlab.config import Config, ConfigError, DataConfig
from genlab.data import TOY_DATASETS, load_array, load_cifar10, load_digits, load_mnist, make_toy
from genlab.data.images import ImageDataset
from genlab.models import CNF, DDPM, Diffusion, FlowMatching, RealNVP
from genlab.networks import MLPConfig, TimeMLP, UNet, UNetConfig
from genlab.paths import (
    BridgePath,
    Coupling,
    DataCoupling,
    DataSource,
    GaussianPath,
    GaussianSource,
    IndependentCoupling,
    OTCoupling,
    ReflowPairs,
    SchrodingerBridgeCoupling,
    make_corruption,
    make_schedule,
)
from genlab.paths.sde import make_sde

IMAGE_SETS = ("digits", "mnist", "cifar10")
FILE_SETS = ("array", "npy", "csv")


def data_names() -> list[str]:
    """Every valid ``data.name``."""
    return sorted([*TOY_DATASETS, *IMAGE_SETS, *FILE_SETS])


def build_dataset(cfg: DataConfig, split: str | None = None) -> Any:
    """The data set named by ``cfg`` (toys are generated, digits ship, files are read)."""
    name, split = cfg.name, split or cfg.split
    if name in TOY_DATASETS:
        return make_toy(name)
    if name == "digits":
        return load_digits(split)
    if name in ("mnist", "cifar10", *FILE_SETS) and not cfg.path:
        what = "a .npy or .csv file of shape (N, D)" if name in FILE_SETS else f"the {name} directory"
        raise ConfigError(f"data.name={name} needs data.path=... pointing to {what}")
    if name == "mnist":
        return load_mnist(cfg.path, split)
    if name == "cifar10":
        return load_cifar10(cfg.path, split)
    if name in FILE_SETS:
        return load_array(cfg.path)
    raise ConfigError(f"data.name={name!r} is not valid; choose one of: {', '.join(data_names())}")


def data_shape(dataset: Any) -> tuple[int, ...]:
    """Shape of one sample: (D,) for vectors, (C, H, W) for images."""
    if isinstance(dataset, ImageDataset):
        return tuple(dataset.shape)
    return (int(dataset.dim),)


def build_network(cfg: Config, shape: tuple[int, ...], num_classes: int | None) -> nn.Module:
    """A TimeMLP for vectors or a UNet for images, as configured."""
    net = cfg.model.net
    classes = num_classes if net.class_conditional else None
    if net.class_conditional and num_classes is None:
        raise ConfigError(
            "model.net.class_conditional=true needs a labelled data set (digits, mnist, cifar10)"
        )
    if net.kind == "mlp":
        if len(shape) != 1:
            raise ConfigError(
                f"model.net.kind=mlp needs vector data, got samples of shape {shape}; use model.net.kind=unet"
            )
        return TimeMLP(
            MLPConfig(
                dim=shape[0],
                width=net.width,
                depth=net.depth,
                activation=net.activation,
                time_embedding=net.time_embedding,
                time_dim=net.time_dim,
                num_classes=classes,
            )
        )
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ConfigError(f"model.net.kind=unet needs square images (C, H, H), got samples of shape {shape}")
    return UNet(
        UNetConfig(
            in_channels=shape[0],
            image_size=shape[1],
            base_channels=net.base_channels,
            channel_mults=net.channel_mults,
            num_res_blocks=net.num_res_blocks,
            time_dim=net.time_dim,
            dropout=net.dropout,
            num_classes=classes,
            attention=net.attention,
            time_embedding=net.time_embedding,
        )
    )


NetFactory = Callable[[], nn.Module]


def build_coupling(cfg: Config, shape: tuple[int, ...]) -> Coupling:
    """The configured coupling (``model.coupling`` with ``model.coupling_args``) and source."""
    m = cfg.model
    args = dict(m.coupling_args)
    if m.source == "gaussian":
        source: GaussianSource | DataSource = GaussianSource()
    else:
        if shape != (2,):
            raise ConfigError(f"model.source={m.source} gives 2D points but the data have shape {shape}")
        source = DataSource(make_toy(m.source), m.source)
    factory: Callable[..., Coupling]
    if m.coupling == "independent":
        factory = IndependentCoupling
    elif m.coupling == "ot":
        factory = OTCoupling
    elif m.coupling == "sb":
        factory = SchrodingerBridgeCoupling
    else:  # a data coupling, named by its corruption
        if len(shape) != 3:
            raise ConfigError(f"model.coupling={m.coupling} corrupts images; the data have shape {shape}")
        if m.source != "gaussian":
            raise ConfigError(
                f"model.coupling={m.coupling} builds x_0 from the data; leave model.source=gaussian"
            )
        noise_std = args.pop("noise_std", 0.0)
        try:
            return DataCoupling(make_corruption(m.coupling, **args), noise_std)
        except ValueError as err:
            raise ConfigError(f"model.coupling_args: {err}") from None
    valid = [k for k in inspect.signature(factory).parameters if k != "source"]
    unknown = sorted(set(args) - set(valid))
    if unknown:
        raise ConfigError(
            f"model.coupling_args.{unknown[0]} is not an argument of model.coupling={m.coupling}; "
            f"valid: {', '.join(valid) or 'none'}"
        )
    try:
        return factory(source=source, **args)
    except ValueError as err:
        raise ConfigError(f"model.coupling_args: {err}") from None


def _flow_matching(cfg: Config, make_net: NetFactory, shape: tuple[int, ...]) -> nn.Module:
    m = cfg.model
    try:
        schedule = make_schedule(m.path, **m.path_args)
    except ValueError as err:
        raise ConfigError(f"model.path_args: {err}") from None
    coupling = build_coupling(cfg, shape)
    if isinstance(coupling, SchrodingerBridgeCoupling):
        path: GaussianPath = BridgePath(coupling.sigma)
    else:
        path = GaussianPath(schedule)
    prediction = m.prediction or "velocity"
    return FlowMatching(make_net(), shape, path, coupling, prediction, m.label_dropout)


def _diffusion(cfg: Config, make_net: NetFactory, shape: tuple[int, ...]) -> nn.Module:
    m = cfg.model
    try:
        sde = make_sde(m.sde, **m.sde_args)
    except ValueError as err:
        raise ConfigError(f"model.sde_args: {err}") from None
    return Diffusion(make_net(), shape, sde, m.prediction or "x0", m.weighting, m.label_dropout)


def _ddpm(cfg: Config, make_net: NetFactory, shape: tuple[int, ...]) -> nn.Module:
    return DDPM(make_net(), shape, cfg.model.num_steps, label_dropout=cfg.model.label_dropout)


def _cnf(cfg: Config, make_net: NetFactory, shape: tuple[int, ...]) -> nn.Module:
    m = cfg.model
    return CNF(make_net(), shape, m.cnf_steps, "rk4", m.divergence, m.kinetic)


def _realnvp(cfg: Config, make_net: NetFactory, shape: tuple[int, ...]) -> nn.Module:
    return RealNVP(shape, cfg.model.flow_layers, cfg.model.flow_hidden)


BUILDERS = {
    "flow_matching": _flow_matching,
    "diffusion": _diffusion,
    "ddpm": _ddpm,
    "cnf": _cnf,
    "realnvp": _realnvp,
}


def build_model(cfg: Config, shape: tuple[int, ...], num_classes: int | None = None) -> nn.Module:
    """The configured model, initialised from ``cfg.train.seed`` (global RNG left untouched)."""

    def make_net() -> nn.Module:
        try:
            return build_network(cfg, shape, num_classes)
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(f"model.net: {err}") from None

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        try:
            return BUILDERS[cfg.model.family](cfg, make_net, shape)
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(f"model: {err}") from None


#: discrete levels of the image data sets (for dequantisation and bits per dimension)
IMAGE_LEVELS = {"digits": 17, "mnist": 256, "cifar10": 256}
#: families trained by maximum likelihood: on discrete images they see dequantised batches
LIKELIHOOD_TRAINED = ("cnf", "realnvp")


def training_sampler(cfg: Config, dataset: Any) -> Callable[[int, torch.Generator], Any]:
    """The trainer's batch sampler; maximum-likelihood families get dequantised images
    (a density on a discrete grid is otherwise unbounded)."""
    if cfg.model.reflow_pairs:
        return reflow_sampler(cfg, data_shape(dataset))
    sample = batch_sampler(dataset, cfg.model.net.class_conditional)
    if cfg.model.family not in LIKELIHOOD_TRAINED or not isinstance(dataset, ImageDataset):
        return sample
    from genlab.likelihood import dequantize

    levels = IMAGE_LEVELS.get(cfg.data.name, 256)

    def dequantized(n: int, gen: torch.Generator) -> Any:
        batch = sample(n, gen)
        if isinstance(batch, tuple):
            return dequantize(batch[0], levels, gen), batch[1]
        return dequantize(batch, levels, gen)

    return dequantized


def batch_sampler(dataset: Any, with_labels: bool) -> Callable[[int, torch.Generator], Any]:
    """A function (batch_size, generator) -> batch for the trainer."""
    if with_labels:

        def sample(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            return dataset.sample_with_labels(n, gen)

        return sample

    def sample_x(n: int, gen: torch.Generator) -> torch.Tensor:
        return dataset.sample(n, gen)

    return sample_x


def reflow_sampler(cfg: Config, shape: tuple[int, ...]) -> Callable[[int, torch.Generator], Any]:
    """Batches of the fixed (x_0, x_1) pairs in ``model.reflow_pairs`` (reflow training)."""
    try:
        pairs = ReflowPairs.load(str(cfg.model.reflow_pairs))
    except ValueError as err:
        raise ConfigError(f"model.reflow_pairs: {err}") from None
    if tuple(pairs.shape) != shape:
        raise ConfigError(
            f"model.reflow_pairs holds samples of shape {tuple(pairs.shape)}, the data have shape {shape}"
        )
    with_labels = cfg.model.net.class_conditional

    def sample(n: int, gen: torch.Generator) -> Any:
        batch = pairs.sample(n, gen)
        if not with_labels:
            batch.pop("y", None)
        return batch

    return sample
