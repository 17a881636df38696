"""Generative models: each exposes loss(batch) -> dict and sample(n, ...)."""

from genlab.models.flow_matching import FlowMatching, split_batch

__all__ = ["FlowMatching", "split_batch"]
