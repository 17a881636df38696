"""Likelihoods: divergence (exact, Hutchinson), the instantaneous change of variables, bits/dim."""

from genlab.likelihood.change_of_variables import (
    DIVERGENCES,
    LogProbResult,
    bits_per_dim,
    dequantize,
    log_prob_ode,
)
from genlab.likelihood.divergence import (
    MAX_JACOBIAN_ELEMENTS,
    PROBES,
    divergence_exact,
    divergence_hutchinson,
    make_probes,
)
from genlab.likelihood.fokker_planck import fokker_planck_rhs

__all__ = [
    "DIVERGENCES",
    "MAX_JACOBIAN_ELEMENTS",
    "PROBES",
    "LogProbResult",
    "bits_per_dim",
    "dequantize",
    "divergence_exact",
    "divergence_hutchinson",
    "fokker_planck_rhs",
    "log_prob_ode",
    "make_probes",
]
