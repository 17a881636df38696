"""Shared fixtures: every schedule with test-friendly parameters, float64 helpers."""

from __future__ import annotations

import pytest
import torch

from genlab.paths import GaussianPath, make_schedule

# VE with a moderate sigma_max keeps the t = 0 marginal from dwarfing the data in the
# transport tests; every other schedule uses its defaults.
SCHEDULE_CASES = {
    "linear": {},
    "ot": {"sigma_min": 0.01},
    "vp": {},
    "ve": {"sigma_max": 10.0},
    "cosine": {},
    "polynomial": {"n": 2.0},
    "ddpm": {},
}


@pytest.fixture(params=sorted(SCHEDULE_CASES))
def path(request: pytest.FixtureRequest) -> GaussianPath:
    return GaussianPath(make_schedule(request.param, **SCHEDULE_CASES[request.param]))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
