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
        ("eval.metrics=w2,kid", "eval.metrics='kid' is not valid"),
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
        assert resolve_config("digits_diffusion", ["model.prediction=noise"]).model.prediction == "noise"


#: the model section every run wrote before the sections were split per family (one flat
#: dataclass with every family's settings at their defaults), as in a saved config.yaml
FLAT_MODEL_SECTION = {
    "ae": {
        "beta": None, "code_dim": 16, "codebook_lr_scale": 10.0, "decoder_std": None, "downsample": 2,
        "iwae_k": 64, "latent_dim": None, "likelihood": "gaussian", "num_codes": 32,
    },
    "cnf_steps": 8, "coupling": "independent", "coupling_args": {}, "divergence": "hutchinson",
    "family": "flow_matching", "flow_hidden": 128, "flow_layers": 8,
    "gan": {
        "clip": 0.01, "corruption": "superres", "corruption_args": {}, "cycle_weight": 10.0,
        "domain": "inverted", "gp_weight": 10.0, "l1_weight": 100.0, "latent_dim": 32,
        "loss": "nonsaturating", "loss_args": {}, "n_critic": 1,
    },
    "kinetic": 0.0, "label_dropout": 0.1,
    "net": {
        "activation": "silu", "attention": False, "base_channels": 32, "channel_mults": [1, 2],
        "class_conditional": False, "depth": 4, "dropout": 0.0, "kind": "mlp", "num_res_blocks": 1,
        "time_dim": 64, "time_embedding": "sinusoidal", "width": 256,
    },
    "num_steps": 1000, "path": "linear", "path_args": {}, "prediction": None, "reflow_pairs": None,
    "sde": "vp", "sde_args": {}, "source": "gaussian", "weighting": "sigma2",
}  # fmt: skip


@pytest.mark.parametrize(
    ("family", "own"),
    [
        ("flow_matching", {"path": "ot"}),
        ("diffusion", {"sde": "ve"}),
        ("ddpm", {"num_steps": 50}),
        ("cnf", {"cnf_steps": 4}),
        ("realnvp", {"flow_layers": 4}),
        ("vae", {"ae": {"latent_dim": 3}}),
        ("vqvae", {"ae": {"num_codes": 8}}),
        ("gan", {"gan": {"latent_dim": 5}}),
        ("pix2pix", {"gan": {"l1_weight": 10.0}}),
        ("cyclegan", {"gan": {"cycle_weight": 2.0}}),
    ],
)
def test_a_run_saved_with_the_flat_model_section_still_loads(family: str, own: dict[str, object]) -> None:
    """Each family reads its own settings from an old config.yaml; the other families' keys,
    at the defaults every run wrote, are dropped."""
    import copy

    from genlab.models import FAMILIES

    section = copy.deepcopy(FLAT_MODEL_SECTION)
    section["family"] = family
    for key, value in own.items():
        if isinstance(value, dict):
            section[key].update(value)  # type: ignore[union-attr]
        else:
            section[key] = value
    cfg = build_config({"model": section})
    assert type(cfg.model) is FAMILIES[family].config
    key, value = next(iter(own.items()))
    read = getattr(cfg.model, key)
    if isinstance(value, dict):
        ((sub, expected),) = value.items()
        assert getattr(read, sub) == expected
    else:
        assert read == value
    assert build_config(cfg.to_dict()) == cfg  # and what it writes now loads again


def test_a_setting_of_another_family_is_refused_not_ignored() -> None:
    section = {**FLAT_MODEL_SECTION, "family": "diffusion", "coupling": "ot"}  # not a default
    with pytest.raises(
        ConfigError, match="model.coupling applies to model.family=flow_matching / meanflow, not to diffusion"
    ):
        build_config({"model": section})
    with pytest.raises(
        ConfigError, match="model.flow_layers=4 is a setting of model.family=realnvp, not of vae"
    ):
        build_config({"model": {"family": "vae"}}, ["model.flow_layers=4"])
    with pytest.raises(ConfigError, match="model.ae.num_codes applies to model.family=vqvae, not to vae"):
        build_config({"model": {"family": "vae", "ae": {"num_codes": 8}}})
    with pytest.raises(ConfigError, match="unknown key 'model.widht'"):
        build_config({}, ["model.widht=3"])


def test_switching_family_keeps_the_file_settings_the_new_family_reads() -> None:
    """``moons`` sets flow-matching keys (path, prediction); an override to realnvp drops them,
    and to diffusion keeps the network it shares."""
    cfg = resolve_config("moons", ["model.family=realnvp", "model.flow_layers=4"])
    assert cfg.model.family == "realnvp" and not hasattr(cfg.model, "net")
    moons = resolve_config("moons")
    diffusion = resolve_config("moons", ["model.family=diffusion"])
    assert diffusion.model.net == moons.model.net  # type: ignore[attr-defined]


def test_shared_overrides_skip_the_settings_of_other_families_with_a_warning() -> None:
    with pytest.warns(
        UserWarning, match="model.net.width=8 is a setting of the other families; ignored for realnvp"
    ):
        cfg = resolve_config("moons_realnvp", ["model.net.width=8", "model.flow_hidden=16"], shared=True)
    assert cfg.model.flow_hidden == 16  # type: ignore[attr-defined]


def test_each_family_config_holds_only_its_own_settings() -> None:
    from genlab.models import FAMILIES

    sections = {name: set(fam.config().to_dict()) for name, fam in FAMILIES.items()}
    assert "net" not in sections["realnvp"] and "path" not in sections["diffusion"]
    assert "coupling" in sections["flow_matching"] and "coupling" not in sections["ddpm"]
    assert sections["vae"] == {"family", "net", "ae"} and sections["gan"] == {"family", "net", "gan"}


def test_an_override_does_not_hide_an_invalid_section(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train: 5\n")
    with pytest.raises(ConfigError, match="train must be a mapping of keys to values, got 5"):
        load_config(path, ["train.steps=20"])
    path.write_text("model:\n  net: wide\n")
    with pytest.raises(ConfigError, match="model.net must be a mapping.*'wide'"):
        load_config(path, ["model.net.width=8"])
    path.write_text("train:\n")  # an empty section is a section of defaults
    assert load_config(path, ["train.steps=20"]).train.steps == 20


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_config_file_is_refused(text: str, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="is empty; give at least one section"):
        load_config(path)


def test_a_saved_run_that_predates_a_changed_default_keeps_its_old_value() -> None:
    """model.net.time_scale went from 1000 to 30: a run whose config does not record it was
    trained with 1000 and must rebuild that network; a new config gets the new default."""
    from genlab.app.config import saved_run_config

    old = {"model": {"family": "flow_matching", "net": {"kind": "mlp", "width": 32}}}
    assert saved_run_config(old).model.net.time_scale == 1000.0
    assert "time_scale" not in old["model"]["net"]  # the caller's dict is not changed
    assert build_config(old).model.net.time_scale == 30.0
    recorded = {"model": {"family": "flow_matching", "net": {"time_scale": 30.0}}}
    assert saved_run_config(recorded).model.net.time_scale == 30.0
    assert saved_run_config({"model": {"family": "realnvp"}}).model.family == "realnvp"  # no net section


def test_an_old_run_rebuilds_its_network_with_the_old_time_scale(tmp_path: Path) -> None:
    import json

    import yaml

    from genlab.app.cli import main
    from genlab.app.runs import load_run
    from genlab.networks.embeddings import SinusoidalTimeEmbedding

    run = tmp_path / "run"
    tiny = ["train.steps=2", "train.ckpt_every=2", "model.net.width=8", "model.net.depth=1", "--no-progress"]
    assert main(["train", "moons", *tiny, "--out", str(run)]) == 0

    def scales() -> set[float]:
        model = load_run(run, device="cpu").model
        return {m.time_scale for m in model.modules() if isinstance(m, SinusoidalTimeEmbedding)}

    assert scales() == {30.0}
    for sidecar in (run / "checkpoints").glob("step_*.json"):  # as a run written before the setting
        meta = json.loads(sidecar.read_text())
        del meta["config"]["model"]["net"]["time_scale"]
        sidecar.write_text(json.dumps(meta))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    del saved["model"]["net"]["time_scale"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert scales() == {1000.0}
