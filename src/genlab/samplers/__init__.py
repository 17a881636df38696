"""Samplers: a model plus a path or SDE, turned into a field for a solver."""

from genlab.samplers.ode import sample_ode, velocity_field
from genlab.samplers.reflow import generate_pairs

__all__ = ["generate_pairs", "sample_ode", "velocity_field"]
