"""Standard Inception FID (metric ``fid``): genlab's Frechet distance against pytorch-fid's on
random features, the feature pipeline with a stand-in network, and the one-line errors where
the weights or the package are missing (as on machines without internet)."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from cli_helpers import error_of
from genlab._validate import ConfigError
from genlab.app.cli import main
from genlab.app.evaluation import evaluate
from genlab.metrics import frechet_distance, gaussian_stats
from genlab.metrics import inception as fid

TINY_IMAGES = [
    "train.steps=4",
    "train.batch_size=16",
    "train.log_every=2",
    "train.ckpt_every=4",
    "model.net.base_channels=8",
    "sample.steps=2",
    "eval.n=40",
]


def _pytorch_fid_frechet() -> Any:
    """pytorch-fid's own ``calculate_frechet_distance``, executed from its source file.

    The module that holds it imports torchvision (for its image loader) at the top, which
    these CPU machines cannot import; the function itself uses numpy and scipy only, so its
    definition is taken from the file as published and run without the module's imports."""
    spec = importlib.util.find_spec("pytorch_fid")
    if spec is None or spec.origin is None:
        pytest.skip("pytorch-fid is not installed (make setup installs it)")
    source = (Path(spec.origin).parent / "fid_score.py").read_text()
    tree = ast.parse(source)
    func = next(
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "calculate_frechet_distance"
    )
    namespace: dict[str, Any] = {"np": np, "linalg": __import__("scipy.linalg").linalg}
    exec(compile(ast.Module(body=[func], type_ignores=[]), "fid_score.py", "exec"), namespace)
    return namespace["calculate_frechet_distance"]


def _features(seed: int, n: int, dim: int, shift: float, scale: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=g, dtype=torch.float64) / dim**0.5
    return shift + scale * torch.randn(n, dim, generator=g, dtype=torch.float64) @ mixing


@pytest.mark.parametrize(
    ("dim", "n", "shift", "scale"),
    [(8, 400, 0.0, 1.0), (32, 300, 0.5, 2.0), (64, 2000, -1.0, 0.3)],
)
def test_frechet_distance_equals_pytorch_fids_on_random_features(
    dim: int, n: int, shift: float, scale: float
) -> None:
    theirs = _pytorch_fid_frechet()
    a = _features(0, n, dim, 0.0, 1.0)
    b = _features(1, n, dim, shift, scale)
    mu_a, cov_a = gaussian_stats(a)
    mu_b, cov_b = gaussian_stats(b)
    # the statistics are pytorch-fid's too: the mean and the unbiased covariance (np.cov)
    np.testing.assert_allclose(cov_a.numpy(), np.cov(a.numpy(), rowvar=False), rtol=1e-12, atol=1e-14)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its sqrtm(..., disp=False)
        expected = float(theirs(mu_a.numpy(), cov_a.numpy(), mu_b.numpy(), cov_b.numpy()))
    ours = frechet_distance(mu_a, cov_a, mu_b, cov_b)
    assert ours == pytest.approx(expected, rel=1e-8, abs=1e-10)
    assert ours > 0.01  # the two laws differ, so the comparison is not between two zeros


def test_inception_fid_of_one_feature_set_with_itself_is_zero() -> None:
    a = _features(3, 500, 16, 0.0, 1.0)
    assert fid.inception_fid(a, a) == pytest.approx(0.0, abs=1e-8)


class _Recorder(nn.Module):
    """A stand-in feature network: the per-channel means and the inputs it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.weight * torch.cat([x.mean((2, 3)), x.std((2, 3))], dim=1)


def test_features_map_model_range_to_unit_interval_and_grey_to_three_channels() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(7, 1, 5, 6, generator=g) * 2.4 - 1.2  # a little outside [-1, 1]
    net = _Recorder()
    feats = fid.inception_features(images, net, batch_size=3)
    assert [len(x) for x in net.seen] == [3, 3, 1]
    seen = torch.cat(net.seen)
    assert seen.shape == (7, 3, 5, 6)
    expected = ((images + 1) / 2).clamp(0, 1)
    for c in range(3):
        torch.testing.assert_close(seen[:, c : c + 1], expected)
    assert feats.dtype == torch.float64 and feats.shape == (7, 6)
    # batching does not change the features
    torch.testing.assert_close(feats, fid.inception_features(images, _Recorder(), batch_size=100))


def test_features_refuse_what_inception_cannot_take() -> None:
    net = _Recorder()
    with pytest.raises(ValueError, match=r"\(N, 1 or 3, H, W\)"):
        fid.inception_features(torch.zeros(4, 2, 8, 8), net)
    with pytest.raises(ValueError, match=r"\(N, 1 or 3, H, W\)"):
        fid.inception_features(torch.zeros(4, 16), net)
    with pytest.raises(ValueError, match="at least 2 images"):
        fid.inception_features(torch.zeros(1, 3, 8, 8), net)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fid") / "run"
    assert main(["train", "digits", *TINY_IMAGES, "--out", str(out), "--no-progress"]) == 0
    return out


def test_fid_without_weights_stops_in_one_line_naming_the_file_and_folder(
    image_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    err = error_of(["eval", str(image_run), "--metrics", "fid"], capsys)
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    assert fid.FID_WEIGHTS_FILE in err and str(folder) in err
    assert "metric fd" in err  # the metric that needs no weights is named
    assert not (image_run / "eval.json").exists() or "fid" not in (image_run / "eval.json").read_text()


def _weights_in_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = fid.fid_weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not read in these tests")


def test_fid_without_pytorch_fid_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _weights_in_cache(tmp_path, monkeypatch)
    for name in [m for m in sys.modules if m.startswith("pytorch_fid")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pytorch_fid", None)  # import pytorch_fid -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'genlab\[fid\]'"):
        fid.inception_network()


def test_fid_with_a_broken_torchvision_says_which_torch_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("pytorch_fid") is None:
        pytest.skip("pytorch-fid is not installed (make setup installs it)")
    _weights_in_cache(tmp_path, monkeypatch)
    for name in [m for m in sys.modules if m.startswith(("pytorch_fid.", "torchvision"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if torchvision could not load
    with pytest.raises(
        ConfigError, match=rf"failed to import .*torch {re.escape(torch.__version__)}"
    ) as info:
        fid.inception_network()
    assert "\n" not in str(info.value)


class _Projection(nn.Module):
    """A fixed random feature map standing in for Inception: 16 features of 3-channel images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(16, 3, 3, 3, generator=torch.Generator().manual_seed(5)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x)).mean((2, 3))


def test_eval_scores_fid_of_samples_and_of_the_data_floor(
    image_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fid, "inception_network", lambda device="cpu": _Projection().to(device))
    result = evaluate(image_run, metrics=["fid", "w2"], n=40)
    score = result["metrics"]["fid"]
    assert np.isfinite(score["value"]) and np.isfinite(score["floor"])
    # the data's own floor is below an untrained model's score (4 steps of training)
    assert 0 <= score["floor"] < score["value"]


def test_fid_on_two_dimensional_data_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "moons"
    args = ["train.steps=2", "model.net.width=8", "model.net.depth=1", "train.ckpt_every=2", "eval.n=20"]
    assert main(["train", "moons", *args, "--out", str(out), "--no-progress"]) == 0
    err = error_of(["eval", str(out), "--metrics", "fid"], capsys)
    assert "needs images with 1 or 3 channels" in err


def test_compare_refuses_fid_without_weights_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    out = tmp_path / "cmp"
    err = error_of(["compare", "digits", "digits_vae", "--metrics", "fid", "--out", str(out)], capsys)
    assert fid.FID_WEIGHTS_FILE in err
    assert not out.exists()  # nothing was trained
