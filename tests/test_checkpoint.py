"""Checkpoints: exact round trips, bit-identical resume, crash safety, never unpickling."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest
import torch

import genlab
from genlab._atomic import atomic_write_json, atomic_write_text
from genlab.training import (
    FORMAT_VERSION,
    Checkpoint,
    list_checkpoints,
    load_checkpoint,
    optimizer_state_from_tensors,
    optimizer_state_to_tensors,
    save_checkpoint,
)


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator, steps: int) -> None:
    for _ in range(steps):
        x = torch.randn(16, 3, generator=gen)  # (B, 3)
        loss = (model(x) - x[:, :2].sin()).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _save_state(
    run: Path, step: int, model: torch.nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator
) -> Path:
    opt_tensors, opt_json = optimizer_state_to_tensors(opt.state_dict())
    return save_checkpoint(
        run,
        step,
        {"model": model.state_dict(), "optim": opt_tensors, "rng": {"data": gen.get_state()}},
        {"optimizer": opt_json, "config": {"lr": 1e-2}},
    )


def _assert_same(a: object, b: object) -> None:
    """Deep equality with exact types (tuple stays tuple) and bitwise tensor equality."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert sorted(a, key=str) == sorted(b, key=str)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


def test_round_trip_model_optimizer_generator(tmp_path: Path) -> None:
    model, gen = _model(0), torch.Generator().manual_seed(1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    _train(model, opt, gen, 3)
    path = _save_state(tmp_path, 3, model, opt, gen)
    assert path == tmp_path / "checkpoints" / "step_00000003.safetensors"

    ckpt = load_checkpoint(tmp_path)
    assert isinstance(ckpt, Checkpoint)
    assert ckpt.step == 3 and ckpt.path == path
    _assert_same(ckpt.tensors["model"], dict(model.state_dict()))
    assert torch.equal(ckpt.tensors["rng"]["data"], gen.get_state())
    restored = optimizer_state_from_tensors(ckpt.tensors["optim"], ckpt.meta["optimizer"])
    _assert_same(restored, opt.state_dict())
    assert restored["param_groups"][0]["betas"] == (0.8, 0.95)
    assert ckpt.meta["config"] == {"lr": 1e-2}
    assert ckpt.info["format_version"] == FORMAT_VERSION
    assert ckpt.info["torch_version"] == torch.__version__
    assert ckpt.info["genlab_version"] == genlab.__version__
    assert "created" in ckpt.info

    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["step"] == 3 and sidecar["format_version"] == FORMAT_VERSION


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    model, gen = _model(0), torch.Generator().manual_seed(1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _train(model, opt, gen, 3)
    _save_state(tmp_path, 3, model, opt, gen)
    _train(model, opt, gen, 5)  # the uninterrupted run

    ckpt = load_checkpoint(tmp_path)
    model2 = _model(123)  # different init: everything must come from the checkpoint
    model2.load_state_dict(ckpt.tensors["model"])
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.5)  # wrong lr, overwritten on load
    opt2.load_state_dict(optimizer_state_from_tensors(ckpt.tensors["optim"], ckpt.meta["optimizer"]))
    gen2 = torch.Generator()
    gen2.set_state(ckpt.tensors["rng"]["data"])
    _train(model2, opt2, gen2, 5)

    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)
    _assert_same(opt.state_dict(), opt2.state_dict())


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.Adam(ps, lr=1e-3, amsgrad=True),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
        lambda ps: torch.optim.RMSprop(ps, lr=1e-3, centered=True),
    ],
    ids=["adam-amsgrad", "sgd-nesterov", "rmsprop"],
)
def test_optimizer_state_json_round_trip(make) -> None:  # type: ignore[no-untyped-def]
    model, gen = _model(0), torch.Generator().manual_seed(0)
    opt = make(model.parameters())
    _train(model, opt, gen, 2)
    tensors, spec = optimizer_state_to_tensors(opt.state_dict())
    spec = json.loads(json.dumps(spec, allow_nan=False))  # strict JSON
    _assert_same(optimizer_state_from_tensors(tensors, spec), opt.state_dict())


def test_optimizer_state_special_values() -> None:
    state = {
        "state": {0: {"step": 3, "buf": torch.arange(3.0)}, 2: {"k": (1, "a", None)}},
        "param_groups": [{"lr": math.inf, "eps": -math.inf, "x": math.nan, "params": [0, 2]}],
    }
    tensors, spec = optimizer_state_to_tensors(state)
    assert set(tensors) == {"state/0/buf"}
    back = optimizer_state_from_tensors(tensors, json.loads(json.dumps(spec, allow_nan=False)))
    _assert_same(back, state)
    with pytest.raises(ValueError, match="unsupported type"):
        optimizer_state_to_tensors({"state": {0: {"f": object()}}})
    with pytest.raises(ValueError, match="optimizer_state_to_tensors"):
        optimizer_state_from_tensors(tensors, {"value": 1})


def test_shared_storage_and_empty_groups(tmp_path: Path) -> None:
    w = torch.randn(4, 4)
    state = {"a": w, "tied": w, "view": w.t(), "row": w[1]}
    save_checkpoint(tmp_path, 0, {"model": state, "optim": {}}, {})
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.tensors["optim"] == {}
    for name, t in state.items():
        assert torch.equal(ckpt.tensors["model"][name], t)


def test_latest_json_and_step_selection(tmp_path: Path) -> None:
    for step in (10, 30, 20):
        save_checkpoint(tmp_path, step, {"m": {"x": torch.tensor([float(step)])}}, {})
    assert list_checkpoints(tmp_path) == [10, 20, 30]
    latest = json.loads((tmp_path / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == 20  # the one written last
    assert load_checkpoint(tmp_path).step == 20
    assert load_checkpoint(tmp_path / "checkpoints").step == 20
    assert load_checkpoint(tmp_path, step=30).tensors["m"]["x"].item() == 30.0
    assert load_checkpoint(tmp_path / "checkpoints" / "step_00000010.safetensors").step == 10
    with pytest.raises(ValueError, match="available"):
        load_checkpoint(tmp_path, step=15)

    (tmp_path / "checkpoints" / "latest.json").unlink()
    assert load_checkpoint(tmp_path).step == 30  # newest complete pair


def test_keep_prunes_old_but_not_pinned_or_just_written(tmp_path: Path) -> None:
    group = {"m": {"x": torch.zeros(1)}}
    save_checkpoint(tmp_path, 1, group, {}, pin=True)
    for step in (2, 3, 4, 5):
        save_checkpoint(tmp_path, step, group, {}, keep=2)
    assert list_checkpoints(tmp_path) == [1, 4, 5]
    # An older step written last survives too: keep counts the newest steps.
    save_checkpoint(tmp_path, 0, group, {}, keep=2)
    assert list_checkpoints(tmp_path) == [0, 1, 4, 5]
    save_checkpoint(tmp_path, 6, group, {}, keep=2)
    assert list_checkpoints(tmp_path) == [1, 5, 6]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "latest.json",
        "step_00000001.json",
        "step_00000001.safetensors",
        "step_00000005.json",
        "step_00000005.safetensors",
        "step_00000006.json",
        "step_00000006.safetensors",
    ]
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, 7, group, {}, keep=0)


def test_interrupted_saves_are_ignored(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 5, {"m": {"x": torch.ones(2)}}, {"ok": True})
    ckpt_dir = tmp_path / "checkpoints"
    # Crash while writing step 6: tensors in a temp file, never renamed.
    (ckpt_dir / ".step_00000006.safetensors.abc123.tmp").write_bytes(b"partial")
    # Crash after step 7's tensors but before its sidecar.
    save_checkpoint(tmp_path, 7, {"m": {"x": torch.ones(2)}}, {})
    (ckpt_dir / "step_00000007.json").unlink()
    (ckpt_dir / "latest.json").unlink()

    assert list_checkpoints(tmp_path) == [5]
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 5 and ckpt.meta == {"ok": True}
    with pytest.raises(ValueError, match="no JSON sidecar"):
        load_checkpoint(ckpt_dir / "step_00000007.safetensors")


def test_failed_save_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_checkpoint(tmp_path, 1, {"m": {"x": torch.ones(1)}}, {"bad": object()})
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path, 1, {"m": {"x": torch.ones(1)}}, {"step": 3})
    with pytest.raises(ValueError, match="torch.Tensor"):
        save_checkpoint(tmp_path, 1, {"m": {"x": 1.0}}, {})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="group"):
        save_checkpoint(tmp_path, 1, {"a/b": {"x": torch.ones(1)}}, {})
    assert list_checkpoints(tmp_path) == []
    assert not any(tmp_path.rglob("*.safetensors"))


def test_resave_meta_from_loaded_checkpoint(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, {"m": {"x": torch.ones(1)}}, {"epoch": 2})
    ckpt = load_checkpoint(tmp_path)
    save_checkpoint(tmp_path, 2, ckpt.tensors, ckpt.meta)
    assert load_checkpoint(tmp_path).meta == {"epoch": 2}


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_file_raises_with_path(tmp_path: Path, damage: str) -> None:
    path = save_checkpoint(tmp_path, 1, {"m": {"x": torch.randn(64)}}, {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00" * len(data))
    with pytest.raises(ValueError, match="corrupt") as err:
        load_checkpoint(tmp_path)
    assert str(path) in str(err.value)


def test_corrupt_header_same_size_raises(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 1, {"m": {"x": torch.randn(8)}}, {})
    data = bytearray(path.read_bytes())
    data[8:16] = b"\xff" * 8  # clobber the JSON header, keep the size
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_empty_or_missing_dir_says_train_first(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train first") as err:
        load_checkpoint(tmp_path)
    assert str(tmp_path / "checkpoints") in str(err.value)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(ValueError, match="train first"):
        load_checkpoint(tmp_path / "checkpoints")
    assert list_checkpoints(tmp_path / "nowhere") == []
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 1, {"m": {"x": torch.ones(1)}}, {})
    sidecar_path = path.with_suffix(".json")
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["format_version"] = FORMAT_VERSION + 1
    sidecar_path.write_text(json.dumps(sidecar))
    with pytest.raises(ValueError, match="upgrade genlab"):
        load_checkpoint(tmp_path)


def test_stale_latest_json_is_reported(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, {"m": {"x": torch.ones(1)}}, {})
    atomic_write_json(tmp_path / "checkpoints" / "latest.json", {"step": 9})
    with pytest.raises(ValueError, match="delete latest.json"):
        load_checkpoint(tmp_path)


def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, gen = _model(0), torch.Generator().manual_seed(1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _train(model, opt, gen, 1)
    _save_state(tmp_path, 1, model, opt, gen)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("checkpoint loading must not unpickle")

    for target, name in [
        (pickle, "load"),
        (pickle, "loads"),
        (pickle, "Unpickler"),
        (torch, "load"),
    ]:
        monkeypatch.setattr(target, name, forbidden)
    ckpt = load_checkpoint(tmp_path)
    restored = optimizer_state_from_tensors(ckpt.tensors["optim"], ckpt.meta["optimizer"])
    _assert_same(restored, opt.state_dict())


def test_atomic_writers(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "eval.json"
    atomic_write_json(target, {"w2": 0.25, "steps": [1, 2]})
    assert json.loads(target.read_text()) == {"w2": 0.25, "steps": [1, 2]}
    atomic_write_text(target, "replaced")
    assert target.read_text() == "replaced"
    with pytest.raises(ValueError, match="JSON-serialisable"):
        atomic_write_json(target, {"x": object()})
    assert target.read_text() == "replaced"
    assert sorted(p.name for p in target.parent.iterdir()) == ["eval.json"]  # no temp files
