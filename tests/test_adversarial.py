"""Alternating GAN updates in the shared trainer, the GAN model, and best-checkpoint tracking."""

from __future__ import annotations

import pytest
import torch

from genlab.app.config import ConfigError, TrainConfig, build_config
from genlab.models import GAN, VQVAE
from genlab.models.adversarial import AdversarialModel
from genlab.networks.gan import ConvDiscriminator, ConvGenerator, MLPDiscriminator, MLPGenerator
from genlab.training.checkpoint import load_checkpoint
from genlab.training.trainer import BEST_DIRNAME, Trainer, has_best


def _gan(loss: str = "nonsaturating", n_critic: int = 1, classes: int | None = None, **kw) -> GAN:
    torch.manual_seed(0)
    g = MLPGenerator(4, 2, width=16, depth=2, num_classes=classes)
    d = MLPDiscriminator(2, width=16, depth=2, num_classes=classes)
    return GAN(g, d, (2,), latent_dim=4, loss=loss, n_critic=n_critic, num_classes=classes, **kw)


def _blobs(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(n, 2, generator=gen) * 0.3 + torch.tensor([2.0, -1.0])


def _cfg(**kw) -> TrainConfig:
    base = dict(steps=6, batch_size=32, lr=1e-3, warmup_steps=0, ema_decay=0.0, log_every=2, ckpt_every=3)
    base.update(kw)
    return TrainConfig(**base)


def _flat(params) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in params])


class _Counting(AdversarialModel):
    """Records the order of the trainer's calls; each loss moves one scalar per player."""

    def __init__(self, n_critic: int) -> None:
        super().__init__()
        self.n_critic = n_critic
        self.d = torch.nn.Parameter(torch.zeros(()))
        self.g = torch.nn.Parameter(torch.zeros(()))
        self.calls: list[str] = []

    def discriminator_parameters(self):
        return [self.d]

    def generator_parameters(self):
        return [self.g]

    def d_loss(self, batch, generator=None):
        self.calls.append("d")
        # the cross term gives g a gradient that the generator's update must not see
        return {"loss": (self.d - 1.0) ** 2 + 10.0 * self.g**2, "d_diag": torch.tensor(1.0)}

    def g_loss(self, batch, generator=None):
        self.calls.append("g")
        self.g_seen = self.g.detach().clone()
        return {"loss": (self.g + 1.0) ** 2 + 10.0 * self.d**2}

    def after_d_step(self) -> None:
        self.calls.append("after")


def test_trainer_alternates_n_critic_d_updates_with_one_g_update(tmp_path) -> None:
    model = _Counting(n_critic=3)
    trainer = Trainer(
        model, lambda n, g: torch.zeros(n, 1), _cfg(steps=2, grad_clip=None), tmp_path, progress=False
    )
    trainer.fit()
    assert model.calls == ["d", "after"] * 3 + ["g"] + ["d", "after"] * 3 + ["g"]
    assert set(trainer.optimizers) == {"d", "g"}
    # each player moved towards its own optimum only: d -> 1, g -> -1
    assert float(model.d.detach()) > 0 and float(model.g.detach()) < 0
    # the last generator update saw the gradient of g_loss alone: d/dg (g + 1)^2 = 2 (g + 1)
    assert model.g.grad is not None
    assert torch.allclose(model.g.grad, 2.0 * (model.g_seen + 1.0))
    record = [r for r in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    assert '"d_loss"' in record and '"g_loss"' in record and '"d_diag"' in record


def test_discriminator_step_moves_d_only_and_generator_step_moves_g_only(tmp_path) -> None:
    model = _gan()
    g0, d0 = _flat(model.generator.parameters()), _flat(model.discriminator.parameters())
    trainer = Trainer(model, _blobs, _cfg(steps=1, grad_clip=None), tmp_path, progress=False)
    batch = _blobs(32, torch.Generator().manual_seed(0))
    params = model.player_parameters()
    trainer._update("d", model.d_loss(batch, torch.Generator().manual_seed(1))["loss"], params["d"], "d")
    assert torch.equal(_flat(model.generator.parameters()), g0)
    assert not torch.equal(_flat(model.discriminator.parameters()), d0)
    d1 = _flat(model.discriminator.parameters())
    trainer._update("g", model.g_loss(batch, torch.Generator().manual_seed(2))["loss"], params["g"], "g")
    assert torch.equal(_flat(model.discriminator.parameters()), d1)
    assert not torch.equal(_flat(model.generator.parameters()), g0)


def test_wgan_clips_the_critic_after_every_update_and_uses_rmsprop(tmp_path) -> None:
    model = _gan("wgan", n_critic=5, clip=0.02)
    cfg = _cfg(steps=3, optimizer="rmsprop", lr=5e-3, grad_clip=None)
    trainer = Trainer(model, _blobs, cfg, tmp_path, progress=False)
    assert all(isinstance(o, torch.optim.RMSprop) for o in trainer.optimizers.values())
    trainer.fit()
    weights = _flat(model.discriminator.parameters())
    assert float(weights.abs().max()) <= 0.02 + 1e-7
    assert float(weights.abs().max()) == pytest.approx(0.02)  # lr 5e-3 pushes some to the bound


def test_discriminator_learning_rate_and_adam_betas(tmp_path) -> None:
    cfg = _cfg(d_lr=4e-4, lr=1e-4, betas=(0.5, 0.9))
    trainer = Trainer(_gan(), _blobs, cfg, tmp_path, progress=False)
    assert trainer.optimizers["d"].param_groups[0]["lr"] == pytest.approx(4e-4)
    assert trainer.optimizers["g"].param_groups[0]["lr"] == pytest.approx(1e-4)
    assert trainer.optimizers["g"].param_groups[0]["betas"] == (0.5, 0.9)


def test_vqvae_codebook_gets_its_learning_rate_multiplier(tmp_path) -> None:
    model = VQVAE((1, 8, 8), num_codes=4, code_dim=2, hidden=4, codebook_lr_scale=10.0)
    cfg = _cfg(lr=1e-3, warmup_steps=4)
    trainer = Trainer(model, lambda n, g: torch.zeros(n, 1, 8, 8), cfg, tmp_path, progress=False)
    from genlab.training.optim import set_lr

    set_lr(trainer.optimizer, 1, cfg)  # warm-up step 2 of 4: half the learning rate
    lrs = [g["lr"] for g in trainer.optimizer.param_groups]
    assert lrs == pytest.approx([0.5e-3, 0.5e-2])
    codebook = trainer.optimizer.param_groups[1]["params"]
    assert len(codebook) == 1 and codebook[0] is model.quantizer.codebook


def test_gan_resume_is_bit_exact(tmp_path) -> None:
    cfg = _cfg(steps=8, ckpt_every=4, ema_decay=0.9)
    full = Trainer(_gan("wgan-gp", n_critic=2), _blobs, cfg, tmp_path / "a", progress=False)
    full.fit()
    interrupted = Trainer(
        _gan("wgan-gp", n_critic=2), _blobs, _cfg(steps=4, ema_decay=0.9), tmp_path / "b", progress=False
    )
    interrupted.fit()
    resumed = Trainer(_gan("wgan-gp", n_critic=2), _blobs, cfg, tmp_path / "b", progress=False)
    resumed.fit(resume=True)
    for (k, a), (_, b) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    for name in ("d", "g"):
        sa, sb = full.optimizers[name].state_dict()["state"], resumed.optimizers[name].state_dict()["state"]
        assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


def test_best_checkpoint_keeps_the_lowest_score_and_survives_resume(tmp_path) -> None:
    scores = iter([3.0, 1.0, 2.0, 2.5, 0.5])
    snapshots: dict[float, dict[str, torch.Tensor]] = {}

    def evaluator(model) -> float:
        score = next(scores)
        snapshots[score] = {k: v.clone() for k, v in model.state_dict().items()}
        return score

    cfg = _cfg(steps=6, eval_every=2, ckpt_every=6)
    trainer = Trainer(_gan(), _blobs, cfg, tmp_path, progress=False, evaluator=evaluator)
    trainer.fit()
    assert has_best(tmp_path) and trainer.best == 1.0
    best = load_checkpoint(tmp_path / BEST_DIRNAME)
    assert best.step == 4 and best.meta["score"] == 1.0
    saved = best.tensors["model"]
    assert saved.keys() == snapshots[1.0].keys()
    assert all(torch.equal(saved[k], snapshots[1.0][k]) for k in saved)

    # resuming restores the best score: 2.5 at step 8 is worse than the 1.0 of step 4 and must
    # not replace it (it would if the resumed trainer had forgotten the best score)
    def resume(steps: int) -> Trainer:
        cfg = _cfg(steps=steps, eval_every=2, ckpt_every=6)
        trainer = Trainer(_gan(), _blobs, cfg, tmp_path, False, evaluator=evaluator)
        trainer.fit(resume=True)
        return trainer

    assert resume(8).best == 1.0 and load_checkpoint(tmp_path / BEST_DIRNAME).step == 4
    assert resume(10).best == 0.5 and load_checkpoint(tmp_path / BEST_DIRNAME).step == 10


def test_gan_losses_and_sampling_contract() -> None:
    model = _gan("lsgan", loss_args={"a": -1.0, "b": 1.0, "c": 0.0})
    gen = torch.Generator().manual_seed(0)
    batch = _blobs(16, gen)
    a = model.d_loss(batch, torch.Generator().manual_seed(3))["loss"]
    b = model.d_loss(batch, torch.Generator().manual_seed(3))["loss"]
    assert torch.equal(a, b)  # every random draw comes from the generator passed in
    sol = model.sample(5, generator=torch.Generator().manual_seed(1))
    assert sol.x.shape == (5, 2) and sol.nfe == 1
    again = model.sample(5, generator=torch.Generator().manual_seed(1)).x
    assert torch.equal(sol.x, again)
    with pytest.raises(ValueError, match="not class-conditional"):
        model.sample(3, y=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="guidance applies to flow matching"):
        model.sample(3, guidance=2.0)
    with pytest.raises(ValueError, match="one pass"):
        model.sample(3, sampler="ode")


def test_conditional_gan_uses_the_labels() -> None:
    model = _gan(classes=3)
    z_gen = torch.Generator().manual_seed(0)
    x0 = model.sample(4, generator=z_gen, y=torch.zeros(4, dtype=torch.long)).x
    x1 = model.sample(4, generator=torch.Generator().manual_seed(0), y=torch.ones(4, dtype=torch.long)).x
    assert not torch.allclose(x0, x1)  # same z, other class
    with pytest.raises(ValueError, match="labelled batches"):
        model.d_loss(torch.randn(8, 2))
    with pytest.raises(ValueError, match=r"labels y must lie in \[0, 2\]"):
        model.sample(2, y=torch.tensor([0, 3]))


def test_gan_refuses_networks_that_do_not_fit_the_data() -> None:
    g8, d16 = ConvGenerator(4, 1, 8, base=4), ConvDiscriminator(1, 16, base=4)
    with pytest.raises(ValueError, match="shape"):
        GAN(g8, d16, (1, 8, 8), latent_dim=4)
    with pytest.raises(ValueError, match=r"generator makes samples of shape \(1, 8, 8\)"):
        GAN(g8, ConvDiscriminator(1, 16, base=4), (1, 16, 16), latent_dim=4)
    g, d = MLPGenerator(4, 2, 8, 1), MLPDiscriminator(2, 8, 1)
    with pytest.raises(ValueError, match="unknown GAN loss 'hinge'"):
        GAN(g, d, (2,), latent_dim=4, loss="hinge")
    with pytest.raises(ValueError, match="n_critic must be an integer >= 1"):
        GAN(g, d, (2,), latent_dim=4, n_critic=0)
    with pytest.raises(ValueError, match="clip must be a positive number"):
        GAN(g, d, (2,), latent_dim=4, loss="wgan", clip=-0.01)


@pytest.mark.parametrize(
    "override, match",
    [
        ("model.gan.loss=hinge", "model.gan.loss='hinge' is not valid"),
        ("model.gan.n_critic=0", "model.gan.n_critic must be >= 1"),
        ("train.lr=0", "train.lr must be > 0"),
        ("train.lr=-1e-4", "train.lr must be > 0"),
        ("train.d_lr=0", "train.d_lr must be > 0"),
        ("train.optimizer=sgd", "train.optimizer='sgd' is not valid"),
        ("train.betas=[0.5]", "train.betas must be two numbers"),
        ("model.gan.clip=0", "model.gan.clip must be > 0"),
        ("model.ae.downsample=3", "model.ae.downsample='3' is not valid"),
        ("model.ae.likelihood=poisson", "model.ae.likelihood='poisson' is not valid"),
        ("model.gan.domain=zebras", "model.gan.domain='zebras' is not valid"),
        ("sample.checkpoint=first", "sample.checkpoint='first' is not valid"),
        ("train.eval_metric=nll", "train.eval_metric='nll' is not valid"),
    ],
)
def test_config_rejects_bad_adversarial_settings(override: str, match: str) -> None:
    family = {"model.ae.downsample": "vqvae", "model.ae.likelihood": "vae", "model.gan.domain": "cyclegan"}
    with pytest.raises(ConfigError, match=match):
        build_config({"model": {"family": family.get(override.split("=")[0], "gan")}}, [override])


def test_non_finite_discriminator_loss_stops_with_a_message(tmp_path) -> None:
    from genlab.training.trainer import TrainingError

    class Diverged(_Counting):
        def d_loss(self, batch, generator=None):
            return {"loss": self.d * float("nan")}

    with pytest.raises(TrainingError, match="the discriminator loss is nan at step 1"):
        Trainer(Diverged(1), lambda n, g: torch.zeros(n, 1), _cfg(), tmp_path, progress=False).fit()


def test_resume_uses_the_configured_learning_rate(tmp_path) -> None:
    Trainer(_gan(), _blobs, _cfg(steps=4, lr=1e-3), tmp_path, progress=False).fit()
    resumed = Trainer(_gan(), _blobs, _cfg(steps=6, lr=1e-2, d_lr=2e-2), tmp_path, progress=False)
    resumed.fit(resume=True)
    assert resumed.optimizers["g"].param_groups[0]["lr"] == pytest.approx(1e-2)
    assert resumed.optimizers["d"].param_groups[0]["lr"] == pytest.approx(2e-2)
    records = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"lr"' in line]
    assert '"lr": 0.01' in records[-1]


def test_ctrl_c_inside_a_step_stops_at_its_end_and_resumes_bit_exactly(tmp_path) -> None:
    import os
    import signal

    class Interrupting(GAN):
        def d_loss(self, batch, generator=None):
            out = super().d_loss(batch, generator)
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 5:  # the third step's first critic update (n_critic = 2)
                os.kill(os.getpid(), signal.SIGINT)
            return out

    def build(cls):
        torch.manual_seed(0)
        return cls(
            MLPGenerator(4, 2, 16, 2), MLPDiscriminator(2, 16, 2), (2,), latent_dim=4, loss="wgan", n_critic=2
        )

    cfg = _cfg(steps=6, ckpt_every=100)
    full = Trainer(build(GAN), _blobs, cfg, tmp_path / "a", progress=False)
    full.fit()
    broken = Trainer(build(Interrupting), _blobs, cfg, tmp_path / "b", progress=False)
    with pytest.raises(KeyboardInterrupt):
        broken.fit()
    assert broken.step == 3  # the interrupted step was finished, then saved
    resumed = Trainer(build(GAN), _blobs, cfg, tmp_path / "b", progress=False)
    resumed.fit(resume=True)
    for (k, a), (_, b) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
