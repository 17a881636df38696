"""From a validated :class:`~genlab.app.config.Config` to data sets, networks and models."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from genlab.app.config import Config, ConfigError, DataConfig
from genlab.data import TOY_DATASETS, load_array, load_cifar10, load_digits, load_mnist, make_toy
from genlab.data.images import ImageDataset
from genlab.models import CNF, DDPM, FAMILIES, GAN, VAE, VQVAE, Diffusion, FlowMatching, RealNVP
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
    path = cfg.path
    if name in ("mnist", "cifar10", *FILE_SETS) and not path:
        what = "a .npy or .csv file of shape (N, D)" if name in FILE_SETS else f"the {name} directory"
        raise ConfigError(f"data.name={name} needs data.path=... pointing to {what}")
    if path and name == "mnist":
        return load_mnist(path, split)
    if path and name == "cifar10":
        return load_cifar10(path, split)
    if path and name in FILE_SETS:
        return load_array(path)
    raise ConfigError(f"data.name={name!r} is not valid; choose one of: {', '.join(data_names())}")


def data_shape(dataset: Any) -> tuple[int, ...]:
    """Shape of one sample: (D,) for vectors, (C, H, W) for images."""
    if isinstance(dataset, ImageDataset):
        return tuple(dataset.shape)
    return (int(dataset.dim),)


def build_network(cfg: Config, shape: tuple[int, ...], num_classes: int | None) -> nn.Module:
    """A TimeMLP for vectors or a UNet for images, as configured."""
    net = cfg.model.net
    if net.kind not in ("mlp", "unet"):
        raise ConfigError(
            f"model.net.kind={net.kind} is a GAN / autoencoder network; model.family={cfg.model.family} "
            "takes model.net.kind=mlp (vectors) or unet (images)"
        )
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
    args: dict[str, Any] = dict(m.coupling_args)
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
            corruption = make_corruption(m.coupling, **args)
            _probe_corruption(corruption, shape)
            return DataCoupling(corruption, noise_std)
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


def _probe_corruption(corruption: Any, shape: tuple[int, ...]) -> None:
    """Corrupt one blank image so that settings that do not fit the image size (a
    super-resolution factor that does not divide it) fail before training starts."""
    corruption(torch.zeros(1, *shape), torch.Generator().manual_seed(0))


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
    return Diffusion(make_net(), shape, sde, m.prediction or "noise", m.weighting, m.label_dropout)


def _ddpm(cfg: Config, make_net: NetFactory, shape: tuple[int, ...]) -> nn.Module:
    return DDPM(make_net(), shape, cfg.model.num_steps, label_dropout=cfg.model.label_dropout)


def _cnf(cfg: Config, make_net: NetFactory, shape: tuple[int, ...]) -> nn.Module:
    m = cfg.model
    return CNF(make_net(), shape, m.cnf_steps, "rk4", m.divergence, m.kinetic)


def _realnvp(cfg: Config, make_net: NetFactory, shape: tuple[int, ...]) -> nn.Module:
    return RealNVP(shape, cfg.model.flow_layers, cfg.model.flow_hidden)


def _net_kind(cfg: Config, shape: tuple[int, ...], image_kinds: tuple[str, ...]) -> str:
    """The configured network kind, checked against the data: mlp for vectors, one of
    ``image_kinds`` for images."""
    kind, family = cfg.model.net.kind, cfg.model.family
    if cfg.model.net.class_conditional and not FAMILIES[family].labelled:
        raise ConfigError(
            f"model.family={family} is not class-conditional; set model.net.class_conditional=false "
            "(conditional families: the Gaussian-path ones and gan)"
        )
    if len(shape) == 1:
        if kind != "mlp":
            raise ConfigError(
                f"model.family={family} on vector data uses MLPs; set model.net.kind=mlp (got {kind})"
            )
        return kind
    if kind not in image_kinds:
        raise ConfigError(
            f"model.family={family} on images of shape {shape} needs model.net.kind="
            f"{' or '.join(image_kinds)} (got {kind})"
        )
    return kind


def _vae(cfg: Config, make_net: NetFactory, shape: tuple[int, ...]) -> nn.Module:
    ae, net = cfg.model.ae, cfg.model.net
    kind = _net_kind(cfg, shape, ("conv",))
    return VAE(
        shape,
        ae.latent_dim,
        net.width if kind == "mlp" else net.base_channels,
        ae.likelihood,
        ae.decoder_std,
        1.0 if ae.beta is None else ae.beta,
        iwae_k=ae.iwae_k,
    )


def _vqvae(cfg: Config, make_net: NetFactory, shape: tuple[int, ...]) -> nn.Module:
    ae = cfg.model.ae
    if len(shape) != 3:
        raise ConfigError(f"model.family=vqvae quantises image feature grids; the data have shape {shape}")
    _net_kind(cfg, shape, ("conv",))
    beta = 0.25 if ae.beta is None else ae.beta
    return VQVAE(
        shape,
        ae.num_codes,
        ae.code_dim,
        cfg.model.net.base_channels,
        ae.downsample,
        beta,
        ae.codebook_lr_scale,
    )


def _gan(cfg: Config, make_net: NetFactory, shape: tuple[int, ...], num_classes: int | None) -> nn.Module:
    from genlab.networks.gan import ConvDiscriminator, ConvGenerator, MLPDiscriminator, MLPGenerator
    from genlab.networks.style import StyleGenerator

    net, g = cfg.model.net, cfg.model.gan
    kind = _net_kind(cfg, shape, ("conv", "style"))
    classes = _classes(cfg, num_classes)
    generator: nn.Module
    if kind == "mlp":
        generator = MLPGenerator(g.latent_dim, shape[0], net.width, net.depth, classes)
        discriminator: nn.Module = MLPDiscriminator(shape[0], net.width, net.depth, classes)
    else:
        channels, size = shape[0], shape[1]
        if kind == "style":
            if classes is not None:
                raise ConfigError(
                    "model.net.kind=style has no label input; use kind=conv for a conditional GAN"
                )
            generator = StyleGenerator(g.latent_dim, channels, size, base=net.base_channels)
        else:
            generator = ConvGenerator(g.latent_dim, channels, size, net.base_channels, classes)
        # the style generator collapses to a few images against a plain discriminator
        # (FD ~800 on digits); the minibatch-std feature of StyleGAN's discriminator helps
        discriminator = ConvDiscriminator(
            channels, size, net.base_channels, classes, minibatch_std=kind == "style"
        )
    return GAN(
        generator,
        discriminator,
        shape,
        g.latent_dim,
        g.loss,
        g.loss_args,
        g.n_critic,
        g.clip,
        g.gp_weight,
        classes,
    )


def _pix2pix(cfg: Config, make_net: NetFactory, shape: tuple[int, ...]) -> nn.Module:
    from genlab.models.translation import Pix2Pix

    net, g = cfg.model.net, cfg.model.gan
    if len(shape) != 3:
        raise ConfigError(f"model.family=pix2pix translates images; the data have shape {shape}")
    _net_kind(cfg, shape, ("unet",))
    args: dict[str, Any] = dict(g.corruption_args)
    noise_std = args.pop("noise_std", 0.0)
    numeric = isinstance(noise_std, (int, float)) and not isinstance(noise_std, bool)
    if not numeric or not 0 <= noise_std < math.inf:
        raise ConfigError(f"model.gan.corruption_args.noise_std must be a number >= 0, got {noise_std!r}")
    _check_unet_depth(cfg, shape)
    try:
        corruption = make_corruption(g.corruption, **args)
        _probe_corruption(corruption, shape)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.gan.corruption_args: {err}") from None
    model = Pix2Pix(
        shape,
        corruption,
        noise_std,
        g.loss,
        g.loss_args,
        g.l1_weight,
        net.base_channels,
        len(net.channel_mults),
    )
    model.n_critic = g.n_critic
    return model


def _cyclegan(cfg: Config, make_net: NetFactory, shape: tuple[int, ...]) -> nn.Module:
    from genlab.data.domains import TransformedImages
    from genlab.models.translation import CycleGAN

    net, g = cfg.model.net, cfg.model.gan
    kind = _net_kind(cfg, shape, ("unet",))
    image_domain = g.domain in ("inverted", "rotated")
    if image_domain != (len(shape) == 3):
        what = "an image transform (inverted, rotated)" if len(shape) == 3 else "a 2D toy data set"
        raise ConfigError(f"model.gan.domain={g.domain} does not fit data of shape {shape}; give {what}")
    if image_domain:
        source: Any = TransformedImages(build_dataset(cfg.data), g.domain)
        transform: str | None = g.domain
    else:
        if shape != (2,):
            raise ConfigError(f"model.gan.domain={g.domain} gives 2D points but the data have shape {shape}")
        source, transform = DataSource(make_toy(g.domain), g.domain), None
    hidden = net.width if kind == "mlp" else net.base_channels
    depth = net.depth if kind == "mlp" else len(net.channel_mults)
    if kind != "mlp":
        _check_unet_depth(cfg, shape)
    model = CycleGAN(shape, source, g.loss, g.loss_args, g.cycle_weight, hidden, depth, transform)
    model.n_critic = g.n_critic
    return model


def _check_unet_depth(cfg: Config, shape: tuple[int, ...]) -> None:
    """The translators' U-Net halves the image once per entry of model.net.channel_mults."""
    levels = len(cfg.model.net.channel_mults)
    if shape[1] % 2**levels or shape[2] % 2**levels:
        raise ConfigError(
            f"model.net.channel_mults has {levels} entries, so the U-Net halves the image {levels} times; "
            f"images of {shape[1]}x{shape[2]} need fewer (e.g. channel_mults=[1, 2])"
        )


def _classes(cfg: Config, num_classes: int | None) -> int | None:
    """The number of classes of a conditional model (None when unconditional)."""
    if not cfg.model.net.class_conditional:
        return None
    if num_classes is None:
        raise ConfigError(
            "model.net.class_conditional=true needs a labelled data set (digits, mnist, cifar10)"
        )
    return num_classes


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "flow_matching": _flow_matching,
    "diffusion": _diffusion,
    "ddpm": _ddpm,
    "cnf": _cnf,
    "realnvp": _realnvp,
    "vae": _vae,
    "vqvae": _vqvae,
    "gan": _gan,
    "pix2pix": _pix2pix,
    "cyclegan": _cyclegan,
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
            build = BUILDERS[cfg.model.family]
            if FAMILIES[cfg.model.family].labelled:  # built with the data's number of classes
                return build(cfg, make_net, shape, num_classes)
            return build(cfg, make_net, shape)
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(f"model: {err}") from None


#: discrete levels of the image data sets (for dequantisation and bits per dimension)
IMAGE_LEVELS = {"digits": 17, "mnist": 256, "cifar10": 256}


def training_sampler(cfg: Config, dataset: Any) -> Callable[[int, torch.Generator], Any]:
    """The trainer's batch sampler; maximum-likelihood families get dequantised images
    (a density on a discrete grid is otherwise unbounded)."""
    if cfg.model.reflow_pairs:
        return reflow_sampler(cfg, data_shape(dataset))
    sample = batch_sampler(dataset, cfg.model.net.class_conditional)
    bernoulli = cfg.model.family == "vae" and cfg.model.ae.likelihood == "bernoulli"  # targets stay in [0, 1]
    likelihood = FAMILIES[cfg.model.family].likelihood_trained  # sees dequantised images
    if not likelihood or not isinstance(dataset, ImageDataset) or bernoulli:
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
