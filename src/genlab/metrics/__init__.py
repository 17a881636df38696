"""Metrics: sample distances (W2, MMD^2), Frechet distances and their floors.

- :mod:`genlab.metrics.distances`: ``wasserstein2``, ``mmd`` (the unbiased MMD^2),
  ``frechet_distance`` / ``gaussian_stats``, the ``SAMPLE_METRICS`` registry,
  ``compute_metrics`` and ``metric_floor`` (the score of a perfect model at sample size n);
- :mod:`genlab.metrics.digits_classifier`: a deterministic CNN trained on the 8x8 digits,
  cached as safetensors, and the Frechet distance in its feature space (an FID for digits);
- :mod:`genlab.metrics.inception`: standard Inception FID through pytorch-fid (an optional
  extra; the weights are read from torch's hub cache, never downloaded by genlab);
- :mod:`genlab.metrics.straightness`: how straight a flow's paths are (rectified-flow
  straightness, path energy, normalised path energy), for comparing couplings.
"""

from genlab.metrics.digits_classifier import (
    DigitsClassifier,
    DigitsClassifierConfig,
    default_cache_dir,
    digits_fd_floor,
    digits_features,
    frechet_digits_distance,
    get_digits_classifier,
    train_digits_classifier,
)
from genlab.metrics.distances import (
    DEFAULT_BANDWIDTH_FACTORS,
    SAMPLE_METRICS,
    compute_metrics,
    frechet_distance,
    gaussian_stats,
    metric_floor,
    mmd,
    wasserstein2,
)
from genlab.metrics.straightness import normalized_path_energy, path_energy, straightness

__all__ = [
    "normalized_path_energy",
    "path_energy",
    "straightness",
    "wasserstein2",
    "mmd",
    "frechet_distance",
    "gaussian_stats",
    "SAMPLE_METRICS",
    "DEFAULT_BANDWIDTH_FACTORS",
    "compute_metrics",
    "metric_floor",
    "DigitsClassifier",
    "DigitsClassifierConfig",
    "train_digits_classifier",
    "get_digits_classifier",
    "default_cache_dir",
    "digits_features",
    "frechet_digits_distance",
    "digits_fd_floor",
]
