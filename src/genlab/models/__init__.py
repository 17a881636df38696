"""Generative models: each exposes loss(batch) -> dict, sample(n, ...) and log_prob(x)."""

from typing import Any

from genlab.models.base import GaussianPathModel, split_batch
from genlab.models.cnf import CNF
from genlab.models.diffusion import DDPM, Diffusion
from genlab.models.flow_matching import FlowMatching
from genlab.models.realnvp import RealNVP
from genlab.models.vae import VAE, gaussian_kl
from genlab.models.vqvae import VQVAE, VectorQuantizer

#: model families by config name (``model.family``); each class lists its SAMPLERS.
#: VAE / VQ-VAE and the GAN losses (``models.gan_losses``) are not families yet: the trainer's
#: alternating updates and their builders come with the CLI integration.
FAMILIES: dict[str, Any] = {
    "flow_matching": FlowMatching,
    "diffusion": Diffusion,
    "ddpm": DDPM,
    "cnf": CNF,
    "realnvp": RealNVP,
}

__all__ = [
    "CNF",
    "DDPM",
    "FAMILIES",
    "Diffusion",
    "FlowMatching",
    "GaussianPathModel",
    "RealNVP",
    "VAE",
    "VQVAE",
    "VectorQuantizer",
    "gaussian_kl",
    "split_batch",
]
