"""The notebook API: ``import genlab`` gives the models, paths, samplers, solvers and a
trainer that takes a tensor; sampling keywords are the CLI's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import genlab


def test_every_exported_name_resolves() -> None:
    for name in genlab.__all__:
        assert getattr(genlab, name) is not None, name
    assert set(genlab.__all__) <= set(dir(genlab))
    with pytest.raises(AttributeError, match="no attribute 'FlowMatch'"):
        genlab.FlowMatch  # noqa: B018


def test_import_genlab_loads_its_names_lazily() -> None:
    code = "import sys, genlab; print(' '.join(m for m in sys.modules if m.startswith('genlab')))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(loaded) == {"genlab", "genlab._version"}, loaded


def _model(classes: int | None = None) -> torch.nn.Module:
    net = genlab.TimeMLP(genlab.MLPConfig(dim=2, width=16, depth=2, num_classes=classes))
    return genlab.FlowMatching(net, (2,), label_dropout=0.1 if classes else 0.0)


def test_fit_on_a_tensor_returns_the_ema_weights(tmp_path: Path) -> None:
    x = torch.randn(256, 2) + 3.0
    model = genlab.fit(_model(), x, run_dir=tmp_path, steps=12, batch_size=32, log_every=4, progress=False)
    ema = genlab.load_checkpoint(tmp_path).tensors["ema"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, ema[name]), name
    assert not model.training


def test_fit_on_labelled_pairs_and_threads() -> None:
    before = torch.get_num_threads()
    try:
        x, y = torch.randn(128, 2), torch.arange(128) % 3
        model = genlab.fit(_model(3), (x, y), steps=4, batch_size=16, threads=1, progress=False)
        assert torch.get_num_threads() == 1  # train.threads is honoured by the trainer itself
        out = model.sample(6, steps=3, y=torch.arange(6) % 3, guidance=1.5).x
        assert out.shape == (6, 2)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("data", "settings", "message"),
    [
        (torch.randn(64, 2), {"stpes": 10}, "unknown setting 'stpes'"),
        (torch.randn(64), {}, r"data must have shape \(N, \*D\)"),
        ((torch.randn(64, 2), torch.zeros(10)), {}, "one label per row"),
        ("points.npy", {}, "data must be a tensor"),
    ],
)
def test_fit_refuses_bad_input_in_one_line(data: object, settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        genlab.fit(_model(), data, steps=2, progress=False, **settings)


def test_sample_takes_steps_like_the_cli() -> None:
    model = _model().eval()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = model.sample(5, steps=4, generator=g()).x
    b = model.sample(5, "rk4", 4, generator=g()).x  # the grid as a step count
    assert torch.equal(a, b) and model.sample(5, steps=4).nfe == 16  # RK4: 4 evaluations a step
    with pytest.raises(ValueError, match="not both"):
        model.sample(5, grid=4, steps=4)
    vae = genlab.VAE((2,), latent_dim=2, hidden=8)
    assert vae.sample(3, steps=10).x.shape == (3, 2)  # one pass: steps do not apply
