"""Generative models: each exposes loss(batch) -> dict and sample(n, ...)."""

from genlab.models.base import GaussianPathModel, split_batch
from genlab.models.flow_matching import FlowMatching

__all__ = ["FlowMatching", "GaussianPathModel", "split_batch"]
