"""Probability paths: schedules, Gaussian conditional paths, couplings, exact marginals."""

from genlab.paths.couplings import (
    COUPLINGS,
    CoupledBatch,
    Coupling,
    GaussianSource,
    IndependentCoupling,
)
from genlab.paths.gaussian import (
    DIVISION_GUARD,
    T_END_GAP,
    GaussianPath,
    PathSample,
    Prediction,
)
from genlab.paths.marginal import EmpiricalMarginal, GaussianMarginal
from genlab.paths.schedules import (
    SCHEDULES,
    CosineSchedule,
    DDPMSchedule,
    LinearSchedule,
    OTSchedule,
    PolynomialSchedule,
    Schedule,
    ScheduleValues,
    VESchedule,
    VPSchedule,
    make_schedule,
)

__all__ = [
    "COUPLINGS",
    "DIVISION_GUARD",
    "SCHEDULES",
    "T_END_GAP",
    "CosineSchedule",
    "DDPMSchedule",
    "CoupledBatch",
    "Coupling",
    "EmpiricalMarginal",
    "GaussianMarginal",
    "GaussianPath",
    "GaussianSource",
    "IndependentCoupling",
    "LinearSchedule",
    "OTSchedule",
    "PathSample",
    "PolynomialSchedule",
    "Prediction",
    "Schedule",
    "ScheduleValues",
    "VESchedule",
    "VPSchedule",
    "make_schedule",
]
