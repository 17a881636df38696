"""Adding a family: a model class, one ``Family`` registration and a builder in the app;
then ``train``, ``sample`` and ``eval`` treat it like the packaged families."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from genlab.app import builders
from genlab.app.config import ConfigError
from genlab.app.evaluation import evaluate
from genlab.app.runs import resolve_config, sample_to_file
from genlab.app.train import train
from genlab.models import FAMILIES, Family, register
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


def test_a_new_family_trains_samples_and_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = dict(FAMILIES)
    monkeypatch.setattr("genlab.models.registry.FAMILIES", registry)
    monkeypatch.setattr("genlab.models.FAMILIES", registry)
    monkeypatch.setattr("genlab.app.config.FAMILIES", registry, raising=False)
    monkeypatch.setattr(builders, "FAMILIES", registry)
    monkeypatch.setattr(
        builders, "BUILDERS", {**builders.BUILDERS, "gaussian_fit": lambda c, n, s: GaussianFit(s)}
    )
    register(Family("gaussian_fit", GaussianFit, has_log_prob=True, likelihood_trained=True))
    assert "gaussian_fit" in likelihood_families()

    cfg = resolve_config(
        "moons", ["model.family=gaussian_fit", "train.steps=300", "train.lr=0.05", "eval.n=500"]
    )
    train(cfg, tmp_path / "run", progress=False)
    result = evaluate(tmp_path / "run", metrics=["w2", "mmd", "nll"], device="cpu")
    assert result["nfe"] == 1 and result["sampler"] == "direct"
    # maximum likelihood on a diagonal Gaussian reaches sum_d 0.5 log(2 pi e var_d) of the data
    data = builders.build_dataset(cfg.data).sample(20_000, torch.Generator().manual_seed(0))
    best = float((0.5 * torch.log(2 * torch.pi * torch.e * data.var(0))).sum())
    nll = json.loads((tmp_path / "run" / "eval.json").read_text())["metrics"]["nll"]["value"]
    assert abs(nll - best) < 0.05, (nll, best)
    out = sample_to_file(tmp_path / "run", 64, tmp_path / "x.npy", device="cpu")
    assert out.exists()
    with pytest.raises(ValueError, match="already registered"):
        register(Family("gaussian_fit", GaussianFit))


def test_an_unregistered_family_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="model.family='gaussian_fit' is not valid; choose one of: cnf"):
        resolve_config("moons", ["model.family=gaussian_fit"])
