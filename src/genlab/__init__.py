"""genlab: deep generative models from the lectures, as tested software.

Time convention everywhere: t = 0 is the source (noise), t = 1 the data, and
x_t = alpha_t x_1 + sigma_t x_0.

The names below load their module on first use, so ``import genlab`` stays light and
``import genlab.solvers`` loads nothing above the solvers::

    import torch, genlab
    x = torch.randn(1000, 2)                                     # your data, (N, D)
    net = genlab.TimeMLP(genlab.MLPConfig(dim=2))
    model = genlab.fit(genlab.FlowMatching(net, (2,)), x, steps=2000)
    samples = model.sample(500, steps=50).x
"""

from __future__ import annotations

import importlib
from typing import Any

from genlab._version import __version__

#: public name -> the module that defines it
_EXPORTS = {
    # models
    **dict.fromkeys(
        ("FlowMatching", "Diffusion", "DDPM", "CNF", "RealNVP", "VAE", "VQVAE", "GAN", "Pix2Pix", "CycleGAN"),
        "genlab.models",
    ),
    # networks
    **dict.fromkeys(("TimeMLP", "MLPConfig", "UNet", "UNetConfig"), "genlab.networks"),
    # paths, couplings, SDEs
    **dict.fromkeys(
        ("GaussianPath", "make_schedule", "IndependentCoupling", "OTCoupling", "SchrodingerBridgeCoupling"),
        "genlab.paths",
    ),
    "make_sde": "genlab.paths.sde",
    # solvers and samplers
    **dict.fromkeys(("TimeGrid", "integrate"), "genlab.solvers"),
    **dict.fromkeys(("sample_ode", "generate_pairs"), "genlab.samplers"),
    # likelihood
    "log_prob_ode": "genlab.likelihood",
    # training
    **dict.fromkeys(("Trainer", "TrainConfig", "fit", "EMA", "load_checkpoint"), "genlab.training"),
    # data, metrics, devices
    **dict.fromkeys(("make_toy", "load_digits", "load_mnist", "load_cifar10", "load_array"), "genlab.data"),
    **dict.fromkeys(("wasserstein2", "mmd", "compute_metrics"), "genlab.metrics"),
    **dict.fromkeys(("resolve_device", "make_generator"), "genlab.devices"),
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'genlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
