"""Config files and dotted overrides: validated before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from genlab.app.config import Config, ConfigError, build_config, load_config, parse_override
from genlab.app.runs import packaged_configs, resolve_config


def test_defaults_round_trip_through_dict() -> None:
    cfg = Config()
    again = build_config(cfg.to_dict())
    assert again == cfg


def test_overrides_are_typed() -> None:
    cfg = build_config(
        {},
        [
            "train.steps=20000",
            "model.net.width=128",
            "data.name=array",
            "data.path=x.npy",
            "model.net.channel_mults=[1,2,2]",
            "eval.metrics=w2,mmd",
            "train.grad_clip=null",
            "model.path_args.sigma_min=0.01",
            "train.lr=3e-4",
        ],
    )
    assert cfg.train.steps == 20000 and cfg.model.net.width == 128
    assert cfg.data.path == "x.npy" and cfg.model.net.channel_mults == (1, 2, 2)
    assert cfg.eval.metrics == ["w2", "mmd"] and cfg.train.grad_clip is None
    assert cfg.model.path_args == {"sigma_min": 0.01} and cfg.train.lr == pytest.approx(3e-4)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.stepz=10", "unknown key 'train.stepz'; valid keys under train: steps, batch_size"),
        ("trian.steps=10", "unknown key 'trian'; valid keys under the config: data, model, train"),
        ("train.steps=ten", "train.steps must be int, got 'ten'"),
        ("train.steps=1.5", "train.steps must be int"),
        ("model.net.attention=3", "model.net.attention must be bool"),
        ("train.steps=0", "train.steps must be >= 1"),
        (
            "model.path=linaer",
            "model.path='linaer' is not valid; choose one of: cosine, ddpm, linear",
        ),
        ("sample.solver=rk5", "choose one of: dopri5, euler, heun, midpoint, rk4"),
        ("train.ema_decay=1.0", "train.ema_decay must be in [0, 1)"),
        ("eval.metrics=w2,fid", "eval.metrics='fid' is not valid"),
        ("steps", "must look like section.key=value"),
    ],
)
def test_bad_overrides_are_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_config({}, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {steps: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(scalar)


def test_packaged_configs_load() -> None:
    names = packaged_configs()
    assert {"moons", "8gaussians", "checkerboard", "digits"} <= set(names)
    for name in names:
        assert isinstance(resolve_config(name), Config)
    repo_configs = Path(__file__).parent.parent / "configs"
    for name in names:  # configs/ in the repository is the same set of files
        assert load_config(repo_configs / f"{name}.yaml") == resolve_config(name)


def test_parse_override_yaml_values() -> None:
    assert parse_override("a.b=true") == ("a.b", True)
    assert parse_override("a.b=1e-3") == ("a.b", 1e-3)
    assert parse_override("a.b=hello") == ("a.b", "hello")


def test_old_prediction_names_load_with_one_deprecation_line() -> None:
    """Saved runs wrote model.prediction=x0 (genlab's x_0 is the noise): it still loads, as
    noise, with a FutureWarning naming the new word; x1 reads as data."""
    import warnings

    from genlab.app.runs import resolve_config
    from genlab.paths import Prediction

    with pytest.warns(FutureWarning, match="model.prediction=x0 is now called noise"):
        cfg = resolve_config("digits_diffusion", ["model.prediction=x0"])
    assert cfg.model.prediction == "noise"
    with pytest.warns(FutureWarning, match="'x1' is now called 'data'"):
        assert Prediction.parse("x1") is Prediction.DATA
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Prediction.parse("noise") is Prediction.NOISE and Prediction.parse("eps") is Prediction.NOISE
        assert resolve_config("digits_diffusion").model.prediction == "noise"
