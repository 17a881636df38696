"""Adding a family: a model class, its config dataclass (which builds it) and one ``Family``
registration; then ``train``, ``sample`` and ``eval`` treat it like the packaged families."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from genlab.app import builders
from genlab.app.config import ConfigError
from genlab.app.evaluation import evaluate
from genlab.app.runs import load_run, resolve_config, sample_settings, sample_to_file
from genlab.app.train import train
from genlab.models import FAMILIES, DataInfo, Family, FamilyConfig, register
from genlab.models.registry import likelihood_families
from genlab.solvers import ODESolution


class GaussianFit(nn.Module):
    """A toy family: a diagonal Gaussian fitted by maximum likelihood."""

    SAMPLERS = ("direct",)

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.data_shape = shape
        self.mean = nn.Parameter(torch.zeros(shape))
        self.log_std = nn.Parameter(torch.zeros(shape))

    def log_prob(self, x: torch.Tensor, **_: Any) -> torch.Tensor:
        z = (x - self.mean) / self.log_std.exp()
        return (-0.5 * z**2 - self.log_std - 0.5 * torch.log(torch.tensor(2 * torch.pi))).flatten(1).sum(1)

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return {"loss": -self.log_prob(batch).mean()}

    def sample(self, n: int, *args: Any, generator: torch.Generator | None = None, **kw: Any) -> ODESolution:
        eps = torch.randn((n, *self.data_shape), generator=generator, device=self.mean.device)
        x = (self.mean + self.log_std.exp() * eps).detach()
        return ODESolution(x=x, times=torch.tensor([0.0, 1.0]), trajectory=None, nfe=1)


@dataclass(kw_only=True)
class GaussianFitConfig(FamilyConfig):
    """Its ``model`` section: one setting, the initial log standard deviation."""

    family: str = "gaussian_fit"
    init_log_std: float = 0.0

    def build(self, data: DataInfo) -> nn.Module:
        model = GaussianFit(data.shape)
        model.log_std.data.fill_(self.init_log_std)
        return model


@pytest.fixture
def gaussian_fit() -> Any:
    """The toy family, registered for one test."""
    family = register(
        Family("gaussian_fit", GaussianFit, GaussianFitConfig, has_log_prob=True, likelihood_trained=True)
    )
    yield family
    del FAMILIES["gaussian_fit"]


def test_a_new_family_trains_samples_and_scores(tmp_path: Path, gaussian_fit: Family) -> None:
    assert "gaussian_fit" in likelihood_families()

    cfg = resolve_config(
        "moons",
        [
            "model.family=gaussian_fit",
            "model.init_log_std=0.5",
            "train.steps=300",
            "train.lr=0.05",
            "eval.n=500",
        ],
    )
    assert isinstance(cfg.model, GaussianFitConfig) and cfg.model.init_log_std == 0.5
    train(cfg, tmp_path / "run", progress=False)
    result = evaluate(tmp_path / "run", metrics=["w2", "mmd", "nll"], device="cpu")
    assert result["nfe"] == 1 and result["sampler"] == "direct"
    # maximum likelihood on a diagonal Gaussian reaches sum_d 0.5 log(2 pi e var_d) of the data
    data = builders.build_dataset(cfg.data).sample(20_000, torch.Generator().manual_seed(0))
    best = float((0.5 * torch.log(2 * torch.pi * torch.e * data.var(0))).sum())
    nll = json.loads((tmp_path / "run" / "eval.json").read_text())["metrics"]["nll"]["value"]
    assert abs(nll - best) < 0.05, (nll, best)
    run = load_run(tmp_path / "run", device="cpu")
    out = sample_to_file(run, tmp_path / "x.npy", sample_settings(run.cfg, n=64))
    assert np.load(out).shape == (64, 2)
    assert out.exists()
    with pytest.raises(ValueError, match="already registered"):
        register(Family("gaussian_fit", GaussianFit, GaussianFitConfig))
    with pytest.raises(ConfigError, match="model.init_log_std=1 is a setting of model.family=gaussian_fit"):
        resolve_config("moons", ["model.init_log_std=1"])


def test_an_unregistered_family_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="model.family='gaussian_fit' is not valid; choose one of: cnf"):
        resolve_config("moons", ["model.family=gaussian_fit"])
