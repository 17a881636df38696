"""Generative models: each exposes loss(batch) -> dict, sample(n, ...) and log_prob(x)."""

from genlab.models.base import GaussianPathModel, split_batch
from genlab.models.cnf import CNF
from genlab.models.cyclegan import CycleGAN
from genlab.models.diffusion import DDPM, Diffusion
from genlab.models.flow_matching import FlowMatching
from genlab.models.gan import GAN
from genlab.models.latent import LatentModel
from genlab.models.meanflow import MeanFlow
from genlab.models.ncsn import ncsn_loss
from genlab.models.pix2pix import Pix2Pix
from genlab.models.realnvp import RealNVP
from genlab.models.registry import FAMILIES, DataInfo, Family, FamilyConfig, register  # filled by the imports
from genlab.models.vae import VAE, gaussian_kl
from genlab.models.vqvae import VQVAE, VectorQuantizer

__all__ = [
    "DataInfo",
    "Family",
    "FamilyConfig",
    "register",
    "CNF",
    "CycleGAN",
    "DDPM",
    "FAMILIES",
    "Diffusion",
    "FlowMatching",
    "GAN",
    "LatentModel",
    "MeanFlow",
    "Pix2Pix",
    "GaussianPathModel",
    "RealNVP",
    "VAE",
    "VQVAE",
    "VectorQuantizer",
    "gaussian_kl",
    "ncsn_loss",
    "split_batch",
]
