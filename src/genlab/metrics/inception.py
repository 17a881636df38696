"""Standard Inception FID, the image metric every paper reports, through ``pytorch-fid``.

FID is the Frechet distance

    FID = ||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^{1/2})

between Gaussian fits of the 2048 pool features of the Inception-v3 network with the
TensorFlow FID weights (``pt_inception-2015-12-05-6726825d.pth``, as ported by pytorch-fid;
the same network TorchCFM, score_sde and EDM report with). genlab does not ship or
download the weights: they are read from torch's hub cache,
``$TORCH_HOME/hub/checkpoints/`` (default ``~/.cache/torch/hub/checkpoints/``), where
pytorch-fid itself would save them. Where the file is absent (machines without internet),
:func:`inception_network` stops with a one-line :class:`~genlab._validate.ConfigError` that
names the file and the folder; the metric ``fd`` (a digits classifier genlab trains itself)
needs no weights.

Install the network's code with ``pip install 'genlab[fid]'`` (pytorch-fid and a torchvision
that matches your torch). Images enter in genlab's model range [-1, 1] and are mapped to
[0, 1], grey images repeated to three channels, and resized to 299 x 299 by pytorch-fid.
The Frechet distance itself is genlab's :func:`~genlab.metrics.distances.frechet_distance`,
tested against pytorch-fid's ``calculate_frechet_distance`` on random features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from genlab._validate import ConfigError
from genlab.metrics.distances import frechet_distance, gaussian_stats

#: the weights file pytorch-fid loads (TensorFlow's FID Inception, ported to PyTorch)
FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
#: where pytorch-fid publishes it
FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_FILE
#: dimension of the pool features FID uses
FID_FEATURE_DIM = 2048


class PoolFeatures(nn.Module):
    """An Inception-style network whose first output is the pool feature map, as flat rows."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)[0].flatten(1)


def fid_weights_path() -> Path:
    """Where the FID Inception weights must be: torch's hub cache, ``checkpoints/`` folder."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE


def inception_network(device: str | torch.device = "cpu") -> nn.Module:
    """pytorch-fid's Inception-v3 (FID weights, 2048 pool features), in eval mode on ``device``.

    Returns a module from (N, 3, H, W) images in [0, 1] to (N, 2048) features.

    Raises:
        ConfigError: one line, if the weights file is not in the hub cache (naming the file and
            the folder), or pytorch-fid or its torchvision cannot be imported.
    """
    inception_v3 = check_fid_available()
    net = inception_v3(
        [inception_v3.BLOCK_INDEX_BY_DIM[FID_FEATURE_DIM]], resize_input=True, normalize_input=True
    )
    return PoolFeatures(net).eval().to(device)


def check_fid_available() -> Any:
    """pytorch-fid's ``InceptionV3`` class, once the weights file is known to be in the hub
    cache and the package imports; else a one-line ConfigError that says what to do. Cheap:
    callers use it to refuse ``fid`` before any work starts."""
    path = fid_weights_path()
    if not path.is_file():
        raise ConfigError(
            f"metric fid needs the Inception weights file {FID_WEIGHTS_FILE} in {path.parent} "
            f"(download {FID_WEIGHTS_URL} there, or set TORCH_HOME); "
            "metric fd (the digits classifier) needs no weights"
        )
    try:
        from pytorch_fid.inception import InceptionV3
    except ImportError as err:
        if err.name in ("pytorch_fid", "pytorch_fid.inception"):
            raise ConfigError("metric fid needs pytorch-fid: pip install 'genlab[fid]'") from None
        raise _broken_dependency(err) from None
    except Exception as err:  # noqa: BLE001 - a torchvision built for another torch fails with any error
        raise _broken_dependency(err) from None
    return InceptionV3


def _broken_dependency(err: BaseException) -> ConfigError:
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ConfigError(
        f"metric fid: pytorch-fid is installed but failed to import ({type(err).__name__}: {first}); "
        f"install the torchvision build that matches torch {torch.__version__}"
    )


def inception_features(
    images: torch.Tensor,
    network: nn.Module,
    *,
    value_range: tuple[float, float] = (-1.0, 1.0),
    batch_size: int = 100,
) -> torch.Tensor:
    """Features of images for FID: (N, C, H, W) with C = 1 or 3, in ``value_range``, are
    mapped to [0, 1] (clamped), grey images repeated to 3 channels, and fed to ``network`` in
    batches of ``batch_size`` on the network's device. Returns (N, F) float64 on the CPU."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"FID needs images of shape (N, 1 or 3, H, W); got {shape}")
    if len(images) < 2:
        raise ValueError(f"FID needs at least 2 images to fit a covariance; got {len(images)}")
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low; got {value_range}")
    param = next(network.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    out = []
    with torch.no_grad():
        for batch in images.split(batch_size):
            x = ((batch.to(device, torch.float32) - lo) / (hi - lo)).clamp(0.0, 1.0)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            out.append(network(x).flatten(1).to("cpu", torch.float64))
    return torch.cat(out)


def inception_fid(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """FID between two feature sets ((N, F) each, e.g. from :func:`inception_features`)."""
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))
