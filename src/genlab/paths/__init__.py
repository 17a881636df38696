"""Probability paths: schedules, Gaussian conditional paths, couplings, exact marginals."""

from genlab.paths.bridge import BridgePath
from genlab.paths.chains import DDPMChain, NCSNChain
from genlab.paths.corruptions import (
    CORRUPTIONS,
    AdditiveNoise,
    Corruption,
    DataCoupling,
    Inpaint,
    SuperResolution,
    make_corruption,
)
from genlab.paths.couplings import (
    CoupledBatch,
    Coupling,
    DataSource,
    GaussianSource,
    IndependentCoupling,
)
from genlab.paths.diagonal import DiagonalGaussianPath
from genlab.paths.gaussian import (
    DIVISION_GUARD,
    T_END_GAP,
    GaussianPath,
    PathSample,
    Prediction,
)
from genlab.paths.marginal import EmpiricalMarginal, GaussianMarginal
from genlab.paths.ot import OTCoupling, SchrodingerBridgeCoupling, assignment, ot_plan
from genlab.paths.reflow import ReflowPairs
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

#: couplings by the name a config gives them (data couplings are named by their corruption)
COUPLINGS: dict[str, type[Coupling]] = {
    "independent": IndependentCoupling,
    "ot": OTCoupling,
    "sb": SchrodingerBridgeCoupling,
    **{name: DataCoupling for name in CORRUPTIONS},
}

__all__ = [
    "DDPMChain",
    "DiagonalGaussianPath",
    "NCSNChain",
    "ReflowPairs",
    "CORRUPTIONS",
    "COUPLINGS",
    "DIVISION_GUARD",
    "SCHEDULES",
    "T_END_GAP",
    "AdditiveNoise",
    "assignment",
    "BridgePath",
    "Corruption",
    "CosineSchedule",
    "CoupledBatch",
    "Coupling",
    "DataCoupling",
    "DataSource",
    "DDPMSchedule",
    "EmpiricalMarginal",
    "GaussianMarginal",
    "GaussianPath",
    "GaussianSource",
    "IndependentCoupling",
    "Inpaint",
    "LinearSchedule",
    "make_corruption",
    "make_schedule",
    "ot_plan",
    "OTCoupling",
    "OTSchedule",
    "PathSample",
    "PolynomialSchedule",
    "Prediction",
    "Schedule",
    "ScheduleValues",
    "SchrodingerBridgeCoupling",
    "SuperResolution",
    "VESchedule",
    "VPSchedule",
]
