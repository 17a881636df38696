"""Samplers: a model plus a path or SDE, turned into a field for a solver."""

from genlab.samplers.ode import sample_ode, velocity_field

__all__ = ["sample_ode", "velocity_field"]
