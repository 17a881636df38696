"""Device handling without a GPU.

The ``meta`` device plays the second device: a meta tensor has a shape and a dtype but no
values, and an operation that mixes it with a CPU tensor raises ("Tensor on device cpu is
not on the expected device meta"). So a training step, a sample and a log-prob of a model
moved to ``meta``, fed ``meta`` batches, fail wherever the code creates a tensor on the CPU
(a ``torch.randn`` without ``device=``, a time grid left behind, a buffer that is a plain
attribute). Value checks skip meta tensors (``_validate.has_values``); a generator for
``meta`` is a CPU one, which meta factories accept, so the generator device itself is
checked by :func:`test_random_draws_with_a_generator_say_where` (a CUDA generator drawing
on the CPU raises on a GPU).

Every case runs on the CPU first: what works there must work on the second device.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from genlab.app.builders import build_dataset, build_model, data_shape, training_sampler
from genlab.app.config import ConfigError
from genlab.app.datasets import prior_fit_data
from genlab.app.runs import resolve_config
from genlab.devices import DeviceError, autocast, make_generator, resolve_device, to_device
from genlab.models import GaussianPathModel
from genlab.models.adversarial import AdversarialModel
from genlab.paths.ot import OTCoupling
from genlab.training.ema import EMA

META = torch.device("meta")
SMALL = ["model.net.width=16", "model.net.depth=2", "model.net.base_channels=8", "model.flow_hidden=16"]

# (config, overrides): every family, every coupling kind, every sampler at least once
CASES = [
    ("moons", []),  # flow matching, linear path: ode, extension, dpm
    ("moons", ["model.path=cosine", "model.prediction=data"]),  # ddim on a VP-type path
    ("moons_ot", []),  # minibatch OT coupling
    ("moons_sb", []),  # Schrodinger-bridge coupling and the bridge path
    ("8gaussians_to_moons", []),  # a data source
    ("moons_diffusion", []),  # VP SDE: ode, em, pc, extension, ddim, dpm
    ("moons_diffusion", ["model.sde=ve", "model.sde_args={sigma_max: 20.0}"]),  # ald
    ("moons_ddpm", []),
    ("moons_cnf", []),
    ("moons_meanflow", []),  # the mean sampler, and the JVP of its loss
    ("moons_cnf", ["model.divergence=exact"]),
    ("moons_realnvp", []),
    ("moons_vae", []),
    ("digits_vae", []),
    ("digits_vqvae", ["model.ae.prior_args={steps: 10, hidden: 8, layers: 2}"]),
    ("moons_gan", []),
    ("moons_wgan", []),
    ("moons_wgan_gp", []),
    ("digits_cgan", []),
    ("digits_stylegan", []),
    ("digits_pix2pix", []),
    ("digits_cyclegan", []),
    ("circles_to_moons_cyclegan", []),
    ("digits_cond", ["model.net.attention=true"]),  # class labels and guidance
    ("digits_inpaint", []),  # a data coupling
]


def _ids(case: tuple[str, list[str]]) -> str:
    name, over = case
    return name + ("[" + ",".join(o.split("=")[0].split(".")[-1] for o in over) + "]" if over else "")


@pytest.fixture(autouse=True)
def _identity_ot(monkeypatch: pytest.MonkeyPatch) -> None:
    """OT plans are solved on the CPU from values a meta tensor lacks: on meta the plan is
    the identity, and everything around it (drawing x_0, indexing) still runs there."""
    original = OTCoupling.source_indices

    def indices(self: OTCoupling, x0: torch.Tensor, x1: torch.Tensor, gen: Any) -> np.ndarray:
        if x0.device.type == "meta":
            return np.arange(x1.shape[0])
        return original(self, x0, x1, gen)

    monkeypatch.setattr(OTCoupling, "source_indices", indices)


def _build(name: str, over: list[str]) -> tuple[Any, Any, Any]:
    cfg = resolve_config(name, [*SMALL, *over], shared=True)
    dataset = build_dataset(cfg.data)
    model = build_model(cfg, data_shape(dataset), getattr(dataset, "num_classes", None))
    return cfg, dataset, model


def _train_step(model: Any, batch: Any, gen: torch.Generator) -> None:
    """One optimiser step (both players' for the adversarial families) and an EMA update."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ema = EMA(model, 0.9)
    if isinstance(model, AdversarialModel):
        for method in ("d_loss", "g_loss"):
            opt.zero_grad()
            getattr(model, method)(batch, gen)["loss"].backward()
            opt.step()
            if method == "d_loss":
                model.after_d_step()
    else:
        model.loss(batch, gen)["loss"].backward()
        opt.step()
    ema.update()
    device = next(model.parameters()).device
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.device == device for g in grads)
    assert all(v.device == device for v in ema.shadow.values())


def _conditioning(model: Any, dataset: Any, n: int, device: torch.device, gen: torch.Generator) -> dict:
    """Labels (and a guidance scale) for a class-conditional model; the corrupted inputs of a
    data-coupling model."""
    kw: dict[str, Any] = {}
    net = getattr(model, "net", None)
    if getattr(net, "num_classes", None) or getattr(model, "num_classes", None):
        kw["y"] = (torch.arange(n) % 10).to(device)
        if isinstance(model, GaussianPathModel) and model.label_dropout > 0:
            kw["guidance"] = 2.0
    if getattr(model, "starts_from_inputs", False):
        images = dataset.images[:n] if hasattr(dataset, "images") else dataset.sample(n, gen)
        kw["x0"] = model.coupling.inputs(images.to(device), make_generator(device, 1))
    return kw


def _samplers(model: Any) -> tuple[str, ...]:
    return tuple(getattr(model, "SAMPLERS", ("direct",)))


def _sample(model: Any, dataset: Any, sampler: str, device: torch.device) -> torch.Tensor:
    gen = make_generator(device, 0)
    kw = _conditioning(model, dataset, 4, device, gen)
    if isinstance(model, GaussianPathModel) or hasattr(model, "velocity"):
        return model.sample(4, "rk4", 3, gen, sampler=sampler, **kw).x
    return model.sample(4, generator=gen, sampler=sampler, **kw).x


def _log_prob(model: Any, x: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    gen = make_generator(device, 0)
    if isinstance(model, GaussianPathModel) or hasattr(model, "velocity"):
        return [
            model.log_prob(x, steps=2, divergence=d, generator=gen).log_prob for d in ("exact", "hutchinson")
        ]
    out = model.log_prob(x, generator=gen)
    return [out if isinstance(out, torch.Tensor) else out.log_prob]


def _data(cfg: Any, dataset: Any, device: torch.device) -> Any:
    batch = training_sampler(cfg, dataset)(8, torch.Generator().manual_seed(0))  # drawn on the CPU
    return to_device(batch, device)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_every_family_trains_samples_and_scores_on_a_second_device(case: tuple[str, list[str]]) -> None:
    name, over = case
    cfg, dataset, model = _build(name, over)
    if getattr(model, "fits_prior", False):  # VQ-VAE, VAE: samples need the prior of the training data
        model.fit_prior(prior_fit_data(dataset, next(model.parameters()))[:64])
    runs_on_cpu: dict[str, bool] = {}
    for sampler in _samplers(model):  # what the CPU accepts (some samplers refuse some paths)
        try:
            _sample(model, dataset, sampler, torch.device("cpu"))
            runs_on_cpu[sampler] = True
        except ValueError:
            runs_on_cpu[sampler] = False
    assert any(runs_on_cpu.values()), runs_on_cpu
    has_log_prob = hasattr(model, "log_prob")
    if has_log_prob:
        x = _data(cfg, dataset, torch.device("cpu"))
        x = x[0] if isinstance(x, tuple) else x["x"] if isinstance(x, dict) else x
        try:
            _log_prob(model, x[:4], torch.device("cpu"))
        except ValueError:  # no Gaussian source (data couplings)
            has_log_prob = False

    model.to(META)
    assert all(t.device == META for t in [*model.parameters(), *model.buffers()])
    gen = make_generator(META, 0)
    batch = _data(cfg, dataset, META)
    _train_step(model, batch, gen)
    if getattr(model, "fits_prior", False):  # VQ-VAE, VAE: the prior comes from the training data
        model.fit_prior(prior_fit_data(dataset, next(model.parameters()))[:64])
    model.eval()
    for sampler, ok in runs_on_cpu.items():
        if ok:
            x = _sample(model, dataset, sampler, META)
            assert x.device == META, sampler
            assert tuple(x.shape) == (4, *model.data_shape), sampler
    if has_log_prob:
        x = batch[0] if isinstance(batch, tuple) else batch["x"] if isinstance(batch, dict) else batch
        for logp in _log_prob(model, x[:4], META):
            assert logp.device == META and tuple(logp.shape) == (4,)


def test_a_tensor_left_on_the_cpu_fails_on_the_second_device() -> None:
    """The premise of the test above: mixing the devices raises."""
    with pytest.raises(RuntimeError, match="device"):
        torch.zeros(3, device=META) + torch.randn(3)


# -- where draws happen -----------------------------------------------------------------------
RANDOM_FACTORIES = {"randn", "rand", "randint", "randperm"}
#: draws that are meant to happen on the CPU, with the reason
CPU_BY_DESIGN = {
    ("metrics/digits_classifier.py", "randperm"): "the classifier trains on CPU data, once",
    ("networks/embeddings.py", "randn"): "fixed Fourier features, drawn once at construction",
    ("paths/marginal.py", "randn"): "the closed-form marginal of a CPU data set (a test oracle)",
}


def test_random_draws_with_a_generator_say_where() -> None:
    """Every torch.randn / rand / randint / randperm that takes a generator also takes a
    device (the generator's or the data's): without one it draws on the CPU, which a CUDA
    generator refuses and which leaves the result off the model's device."""
    root = Path(__file__).resolve().parents[1] / "src" / "genlab"
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in RANDOM_FACTORIES:
                continue
            keywords = {k.arg for k in node.keywords}
            if (
                "generator" in keywords
                and "device" not in keywords
                and (rel, node.func.attr) not in CPU_BY_DESIGN
            ):
                found.append(f"{rel}:{node.lineno} {ast.unparse(node)[:80]}")
    assert not found, "random draws without device=: " + "; ".join(found)


# -- choosing a device ------------------------------------------------------------------------
def test_resolve_device_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    assert resolve_device(torch.device("meta")) == META
    with pytest.raises(DeviceError, match=r"^train.device='gpu' is not a device; use auto, cpu"):
        resolve_device("gpu", "train.device")
    with pytest.raises(DeviceError, match="no Apple GPU"):
        resolve_device("mps")
    if not torch.backends.cuda.is_built():
        with pytest.raises(
            DeviceError, match=r"^train.device=cuda but this torch build has no CUDA; use cpu"
        ):
            resolve_device("cuda", "train.device")


def test_resolve_device_with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """With two GPUs visible: auto picks the current one, cuda:N is checked against the count."""
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match="only 2 CUDA device"):
        resolve_device("cuda:2", "--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU is visible"):
        resolve_device("cuda:0")


def test_generators_live_where_they_draw() -> None:
    assert make_generator("cpu", 3).device == torch.device("cpu")
    assert make_generator(META, 3).device == torch.device("cpu")  # meta factories accept it
    a = torch.randn(5, generator=make_generator("cpu", 3))
    assert torch.equal(a, torch.randn(5, generator=torch.Generator().manual_seed(3)))


def test_autocast_contexts() -> None:
    x = torch.randn(4, 4)
    with autocast(torch.device("cpu"), "fp32"):
        assert (x @ x).dtype == torch.float32
    with autocast(torch.device("cpu"), "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp16"):
        assert (x @ x).dtype == torch.float16
    with pytest.raises(ValueError, match="precision"):
        autocast(torch.device("cpu"), "fp8")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.device=tpu", "train.device='tpu' is not a device"),
        ("train.device=cuda:x", "is not a device"),
        ("train.precision=fp8", "train.precision='fp8' is not valid"),
        ("train.compile=fast", "train.compile='fast' is not valid"),
    ],
)
def test_bad_device_settings_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_config("moons", [override])


def test_device_settings_are_accepted() -> None:
    cfg = resolve_config(
        "moons", ["train.device=cuda:1", "train.precision=fp16", "train.compile=max-autotune"]
    )
    assert (cfg.train.device, cfg.train.precision, cfg.train.compile) == ("cuda:1", "fp16", "max-autotune")
    assert resolve_config("moons", ["train.compile=true"]).train.compile is True


def test_a_missing_device_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_helpers import error_of

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    err = error_of(["train", "moons", "train.device=cuda", "--out", str(tmp_path / "r")], capsys)
    assert "train.device=cuda" in err and "use cpu or auto" in err
    assert not (tmp_path / "r" / "checkpoints").exists()
    err = error_of(
        ["sample", str(tmp_path / "r"), "--out", str(tmp_path / "x.npy"), "--device", "gpu"], capsys
    )
    assert "--device='gpu' is not a device" in err


def test_checkpoint_meta_records_the_device(tmp_path: Path) -> None:
    from genlab.app.train import train
    from genlab.training.checkpoint import load_checkpoint

    cfg = resolve_config("moons", [*SMALL, "train.steps=4", "train.device=cpu"], shared=True)
    res = train(cfg, tmp_path / "r", progress=False)
    meta = load_checkpoint(tmp_path / "r").meta
    assert res.device == "cpu" and meta["device"] == "cpu" and meta["generator_device"] == "cpu"
    assert meta["config"]["train"]["device"] == "cpu"
    assert "device: cpu" in (tmp_path / "r" / "config.yaml").read_text()


def test_resume_on_another_kind_of_device_reseeds_the_noise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run whose noise was drawn on CUDA resumes on the CPU: a CUDA generator's state does
    not fit a CPU one, so the noise stream is reseeded from the step, with one warning."""
    from genlab.app.train import train
    from genlab.training.checkpoint import list_checkpoints
    from genlab.training.trainer import NOISE_SEED_OFFSET, Trainer

    over = [*SMALL, "train.steps=4", "train.ckpt_every=4", "train.device=cpu"]
    train(resolve_config("moons", over, shared=True), tmp_path / "r", progress=False)
    sidecar = tmp_path / "r" / "checkpoints" / f"step_{list_checkpoints(tmp_path / 'r')[-1]:08d}.json"
    record = json.loads(sidecar.read_text())
    record["generator_device"] = "cuda"  # as if trained on a GPU
    sidecar.write_text(json.dumps(record))
    cfg = resolve_config("moons", [*over, "train.steps=8"], shared=True)
    _, dataset, model = _build("moons", [])
    trainer = Trainer(model, training_sampler(cfg, dataset), cfg.train, tmp_path / "r", cfg.to_dict(), False)
    trainer.restore()
    assert "reseeded noise stream" in capsys.readouterr().err
    fresh = torch.Generator().manual_seed(cfg.train.seed + NOISE_SEED_OFFSET + 4)
    assert torch.equal(trainer.noise_gen.get_state(), fresh.get_state())


def test_device_flag_on_every_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--device cpu on train, sample, eval (with figures), log-prob, reflow and compare (demo:
    tests/test_cli.py); the device is recorded where the run says what it did."""
    from genlab.app.cli import main

    tiny = ["model.net.width=16", "model.net.depth=2", "train.steps=6", "eval.n=64", "sample.steps=3"]
    run = tmp_path / "run"
    assert main(["train", "moons", *tiny, "--out", str(run), "--no-progress", "--device", "cpu"]) == 0
    assert "device: cpu" in (run / "config.yaml").read_text()
    assert main(["sample", str(run), "--n", "8", "--out", str(tmp_path / "x.npy"), "--device", "cpu"]) == 0
    assert np.load(tmp_path / "x.npy").shape == (8, 2)
    assert main(["eval", str(run), "--n", "64", "--device", "cpu", "--figures"]) == 0
    record = json.loads((run / "eval.json").read_text())
    assert record["device"] == "cpu" and record["trained_on"] == "cpu"
    np.save(tmp_path / "pts.npy", np.zeros((3, 2), dtype=np.float32))
    argv = ["log-prob", str(run), "--data", str(tmp_path / "pts.npy"), "--out", str(tmp_path / "lp.npy")]
    assert main([*argv, "--steps", "2", "--device", "cpu"]) == 0
    assert np.isfinite(np.load(tmp_path / "lp.npy")).all()
    reflow = ["reflow", str(run), "--out", str(tmp_path / "reflow"), "--pairs", "64", "--steps", "2"]
    assert main([*reflow, "train.steps=2", "--no-progress", "--device", "cpu"]) == 0
    compare = ["compare", "moons", *tiny[:2], *tiny[3:], "--budget", "3steps", "--seeds", "1", "--n", "64"]
    assert main([*compare, "--out", str(tmp_path / "cmp"), "--no-progress", "--device", "cpu"]) == 0
    plan = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert "train.device=cpu" in json.dumps(plan)
