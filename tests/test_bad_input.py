"""Bad input at the core's public boundaries gives a ValueError naming the argument."""

from __future__ import annotations

import pytest
import torch

from genlab.paths import (
    GaussianPath,
    IndependentCoupling,
    OTSchedule,
    VESchedule,
    VPSchedule,
    make_schedule,
)
from genlab.samplers import sample_ode


def test_unknown_schedule_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="valid schedules are: cosine, ddpm, linear, ot, polynomial, ve, vp"):
        make_schedule("lineaer")
    with pytest.raises(ValueError, match="bad arguments"):
        make_schedule("linear", sigma_min=0.1)


def test_schedule_parameters() -> None:
    with pytest.raises(ValueError, match="sigma_min"):
        OTSchedule(sigma_min=1.5)
    with pytest.raises(ValueError, match="sigma_max"):
        VESchedule(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="beta_max"):
        VPSchedule(beta_min=5.0, beta_max=1.0)


def test_time_out_of_range() -> None:
    path = GaussianPath("linear")
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="t must lie in \\[0, 1\\]"):
        path.sample(x, x, torch.tensor([0.5, 1.5, 0.1]))
    with pytest.raises(ValueError, match="t must lie in \\[0, 1\\]"):
        path.schedule(torch.tensor([-0.1]))
    with pytest.raises(ValueError, match="t must be a scalar or have shape \\(B,\\)"):
        path.sample(x, x, torch.zeros(2))


def test_shape_mismatch() -> None:
    path = GaussianPath("linear")
    with pytest.raises(ValueError, match="x0 and x1 must have the same shape"):
        path.sample(torch.zeros(3, 2), torch.zeros(3, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="pred and x"):
        path.convert(torch.zeros(3, 2), torch.zeros(3, 3), torch.zeros(3), "data", "velocity")


def test_non_finite_data() -> None:
    path = GaussianPath("linear")
    x1 = torch.tensor([[0.0, float("inf")]])
    with pytest.raises(ValueError, match="x1 contains 1 non-finite"):
        path.sample(torch.zeros(1, 2), x1, torch.zeros(1))
    with pytest.raises(ValueError, match="x1 contains"):
        IndependentCoupling()(x1)


def test_non_callable_field() -> None:
    with pytest.raises(ValueError, match="model must be callable"):
        sample_ode("not a model", torch.zeros(2, 2))  # type: ignore[arg-type]


def test_unknown_prediction_in_convert() -> None:
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="unknown prediction 'velocty'"):
        GaussianPath("linear").convert(x, x, torch.zeros(2), "velocty", "data")
