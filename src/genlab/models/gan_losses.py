"""GAN objectives as pure functions of discriminator outputs.

Notation: ``D(x) = sigmoid(l(x))`` is the discriminator's probability that ``x`` is real and
``l`` its logit; ``f`` is a WGAN critic (an unbounded real value); ``x ~ p`` is data and
``G(z) ~ q`` generated. Every expectation ``E`` is a batch mean. The logit forms use
``log D = -softplus(-l)`` and ``log(1 - D) = -softplus(l)``, which are finite for every logit.

- minimax, D: ``-E_p log D(x) - E_q log(1 - D(G(z)))`` (:func:`minimax_d_loss`);
- minimax, G (saturating): ``E_q log(1 - D(G(z)))`` (:func:`minimax_g_loss`);
- non-saturating G: ``-E_q log D(G(z))`` (:func:`nonsaturating_g_loss`);
- LSGAN, D: ``0.5 E_p (D(x) - b)^2 + 0.5 E_q (D(G(z)) - a)^2`` (:func:`lsgan_d_loss`);
- LSGAN, G: ``0.5 E_q (D(G(z)) - c)^2`` (:func:`lsgan_g_loss`);
- WGAN critic: ``E_q f(G(z)) - E_p f(x)`` (:func:`wgan_critic_loss`), weight clipping
  (:func:`clip_weights`);
- WGAN, G: ``-E_q f(G(z))`` (:func:`wgan_g_loss`);
- WGAN-GP penalty: ``lambda E (||grad f(x_hat)||_2 - 1)^2`` (:func:`gradient_penalty`);
- R1 penalty: ``(gamma / 2) E_p ||grad_x l(x)||^2`` on real data (:func:`r1_penalty`,
  Mescheder et al., 2018), which keeps the discriminator flat on the data;
- cycle consistency: ``E||F(G(x)) - x||_1 + E||G(F(y)) - y||_1`` (:func:`cycle_consistency_loss`).

For fixed densities p and q the minimax discriminator is optimal at ``D* = p / (p + q)``
(:func:`optimal_discriminator`), where the value ``V(D*) = E_p log D* + E_q log(1 - D*)``
(:func:`gan_value`) equals ``-log 4 + 2 JSD(p, q)`` (Goodfellow et al., 2014), and
``D* / (1 - D*) = p / q``: a discriminator's logit estimates the log density ratio
(:func:`density_ratio`). For LSGAN the optimum is ``D* = (b p + a q) / (p + q)`` (Mao et al.,
2017).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from genlab._validate import check_callable, check_positive, check_tensor, choose

__all__ = [
    "GAN_LOSSES",
    "clip_weights",
    "cycle_consistency_loss",
    "density_ratio",
    "gan_value",
    "gradient_penalty",
    "lsgan_d_loss",
    "lsgan_g_loss",
    "make_gan_loss",
    "minimax_d_loss",
    "minimax_g_loss",
    "nonsaturating_g_loss",
    "optimal_discriminator",
    "r1_penalty",
    "wgan_critic_loss",
    "wgan_g_loss",
]

LossFn = Callable[..., torch.Tensor]


def _scores(x: object, name: str) -> torch.Tensor:
    check_tensor(x, name)
    assert isinstance(x, torch.Tensor)
    if x.numel() == 0:
        raise ValueError(f"{name} is empty; pass at least one discriminator output")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- minimax (2014)


def minimax_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss ``-E_p log D(x) - E_q log(1 - D(G(z)))`` from logits.

    Computed as ``E softplus(-l(x)) + E softplus(l(G(z)))``. Returns a 0-dim tensor.
    """
    real_logits = _scores(real_logits, "real_logits")
    fake_logits = _scores(fake_logits, "fake_logits")
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def minimax_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Saturating generator loss ``E_q log(1 - D(G(z))) = -E softplus(l(G(z)))``.

    Its gradient with respect to the logit is ``-D(G(z))``, which vanishes when the
    discriminator confidently rejects the samples (``D -> 0``): the reason for
    :func:`nonsaturating_g_loss`.
    """
    fake_logits = _scores(fake_logits, "fake_logits")
    return -F.softplus(fake_logits).mean()


def nonsaturating_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``-E_q log D(G(z)) = E softplus(-l(G(z)))``.

    Its gradient with respect to the logit is ``-(1 - D(G(z)))``: same sign as the saturating
    loss, but close to -1 (per sample, before the mean) when ``D -> 0``.
    """
    fake_logits = _scores(fake_logits, "fake_logits")
    return F.softplus(-fake_logits).mean()


# --------------------------------------------------------------------------- LSGAN (2017)


def lsgan_d_loss(real: torch.Tensor, fake: torch.Tensor, a: float = 0.0, b: float = 1.0) -> torch.Tensor:
    """LSGAN discriminator loss ``0.5 E_p (D(x) - b)^2 + 0.5 E_q (D(G(z)) - a)^2``.

    ``D`` is the raw (unsquashed) discriminator output; ``a`` labels fake and ``b`` real data.
    """
    real = _scores(real, "real")
    fake = _scores(fake, "fake")
    a = _number(a, "a")
    b = _number(b, "b")
    return 0.5 * (real - b).pow(2).mean() + 0.5 * (fake - a).pow(2).mean()


def lsgan_g_loss(fake: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """LSGAN generator loss ``0.5 E_q (D(G(z)) - c)^2``; ``c`` is the value G wants D to output."""
    fake = _scores(fake, "fake")
    c = _number(c, "c")
    return 0.5 * (fake - c).pow(2).mean()


# --------------------------------------------------------------------------- WGAN (2017)


def wgan_critic_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Critic loss ``E_q f(G(z)) - E_p f(x)``: minus the Kantorovich-Rubinstein estimate of W_1."""
    real = _scores(real, "real")
    fake = _scores(fake, "fake")
    return fake.mean() - real.mean()


def wgan_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """Generator loss ``-E_q f(G(z))``."""
    fake = _scores(fake, "fake")
    return -fake.mean()


@torch.no_grad()
def clip_weights(module: nn.Module, c: float = 0.01) -> nn.Module:
    """Clamp every parameter of ``module`` into ``[-c, c]`` in place (Arjovsky et al., 2017).

    With every weight entry in ``[-c, c]`` a linear layer with ``fan_in`` inputs and ``fan_out``
    outputs has spectral norm at most ``c sqrt(fan_in fan_out)`` (the Frobenius bound), so a
    critic of such layers and 1-Lipschitz activations is Lipschitz with the product of these
    bounds. Returns ``module``.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be an nn.Module, got {type(module).__name__}")
    c = check_positive(c, "c")
    for param in module.parameters():
        param.clamp_(-c, c)
    return module


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
    weight: float = 10.0,
) -> torch.Tensor:
    """WGAN-GP penalty ``weight * E (||grad_x f(x_hat)||_2 - 1)^2`` (Gulrajani et al., 2017).

    ``x_hat = eps x + (1 - eps) x_tilde`` with ``x`` real, ``x_tilde`` fake and one
    ``eps ~ U[0, 1]`` per sample drawn from ``generator``. The gradient is taken with
    ``create_graph=True`` so the penalty can be backpropagated into the critic's parameters.

    Args:
        critic: ``f``, mapping a (B, *D) batch to (B,) or (B, 1) values.
        real, fake: batches of identical shape (B, *D); ``fake`` is detached.
        generator: torch.Generator for ``eps`` (None: torch's global generator).
        weight: ``lambda >= 0``.
    """
    check_callable(critic, "critic")
    real = _scores(real, "real")
    fake = _scores(fake, "fake")
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape; got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    if real.dim() < 1:
        raise ValueError(f"real must have a batch dimension, got shape {tuple(real.shape)}")
    weight = _number(weight, "weight")
    if weight < 0:
        raise ValueError(f"weight must be >= 0 (it scales a penalty), got {weight!r}")
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, generator=generator, dtype=real.dtype, device=real.device)
    x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    with torch.enable_grad():
        out = critic(x_hat)
        check_tensor(out, "critic(x_hat)")
        (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norms = grad.flatten(1).norm(dim=1)  # (B,)
    return weight * (norms - 1.0).pow(2).mean()


def r1_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, gamma: float
) -> torch.Tensor:
    """R1 regulariser ``(gamma / 2) E_p ||grad_x l(x)||_2^2`` on the real batch (Mescheder et
    al., 2018, "Which training methods for GANs do actually converge?").

    The gradient is taken with ``create_graph=True`` so the penalty trains the discriminator.
    For a linear discriminator ``l(x) = w . x + b`` it is ``(gamma / 2) ||w||^2``.

    Args:
        critic: ``l``, mapping a (B, *D) batch to (B,) or (B, 1) logits.
        real: the data batch (B, *D).
        gamma: ``gamma >= 0``.
    """
    check_callable(critic, "critic")
    real = _scores(real, "real")
    if real.dim() < 1:
        raise ValueError(f"real must have a batch dimension, got shape {tuple(real.shape)}")
    gamma = _number(gamma, "gamma")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0 (it scales a penalty), got {gamma!r}")
    x = real.detach().requires_grad_(True)
    with torch.enable_grad():
        out = critic(x)
        check_tensor(out, "critic(real)")
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return 0.5 * gamma * grad.flatten(1).pow(2).sum(1).mean()


# --------------------------------------------------------------------------- CycleGAN (2017)


def cycle_consistency_loss(
    G: Callable[[torch.Tensor], torch.Tensor],
    F_inv: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
) -> torch.Tensor:
    """Cycle loss ``E||F(G(x)) - x||_1 + E||G(F(y)) - y||_1`` (Zhu et al., 2017).

    ``G: X -> Y`` and ``F_inv: Y -> X``. ``||.||_1`` sums absolute values over each sample's
    non-batch dims and ``E`` averages over the batch. Zero when ``F_inv`` inverts ``G`` on the
    data.
    """
    check_callable(G, "G")
    check_callable(F_inv, "F_inv")
    x = _scores(x, "x")
    y = _scores(y, "y")

    def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        diff = (a - b).abs()
        return diff.reshape(diff.shape[0], -1).sum(dim=1).mean() if diff.dim() > 0 else diff

    return l1(F_inv(G(x)), x) + l1(G(F_inv(y)), y)


# --------------------------------------------------------------------------- theory helpers


def optimal_discriminator(p_x: torch.Tensor, q_x: torch.Tensor) -> torch.Tensor:
    """``D*(x) = p(x) / (p(x) + q(x))``, the minimax discriminator for fixed densities p and q.

    ``p_x`` and ``q_x`` are non-negative densities (or probabilities) at the same points;
    where both are zero the result is 1/2.
    """
    p_x = _scores(p_x, "p_x")
    q_x = _scores(q_x, "q_x")
    if p_x.shape != q_x.shape:
        raise ValueError(
            f"p_x and q_x must have the same shape; got {tuple(p_x.shape)} and {tuple(q_x.shape)}"
        )
    if bool((p_x < 0).any()) or bool((q_x < 0).any()):
        raise ValueError("p_x and q_x must be non-negative densities")
    total = p_x + q_x
    return torch.where(total > 0, p_x / total.clamp_min(torch.finfo(total.dtype).tiny), 0.5)


def density_ratio(logits: torch.Tensor) -> torch.Tensor:
    """The density ratio ``p(x) / q(x) = D(x) / (1 - D(x)) = exp(l(x))`` read off a discriminator's
    logits ``l`` (Goodfellow et al., 2014; the basis of density-ratio estimation by
    classification): exact at the optimal discriminator ``D* = p / (p + q)``, an estimate for a
    trained one. Computed as ``exp(l)``, which stays finite where ``D`` rounds to 1."""
    return torch.exp(_scores(logits, "logits"))


def gan_value(
    d_real_prob: torch.Tensor,
    d_fake_prob: torch.Tensor,
    real_weights: torch.Tensor | None = None,
    fake_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The minimax value ``V(D) = E_p log D(x) + E_q log(1 - D(G(z)))`` from probabilities.

    Without weights the expectations are batch means (``d_real_prob`` evaluated at samples of
    p, ``d_fake_prob`` at samples of q). With ``real_weights`` / ``fake_weights`` (probabilities
    of discrete points, each summing to 1) they are exact weighted sums, e.g. for discrete p, q
    on a shared support pass ``D*`` twice with weights ``p`` and ``q``. Terms with weight 0 are
    dropped, so ``0 log 0 = 0``.
    """
    d_real_prob = _scores(d_real_prob, "d_real_prob")
    d_fake_prob = _scores(d_fake_prob, "d_fake_prob")
    for name, d in (("d_real_prob", d_real_prob), ("d_fake_prob", d_fake_prob)):
        if bool((d < 0).any()) or bool((d > 1).any()):
            raise ValueError(f"{name} must be probabilities in [0, 1]")

    def expect(values: torch.Tensor, weights: torch.Tensor | None, name: str) -> torch.Tensor:
        if weights is None:
            return values.mean()
        weights = _scores(weights, name)
        if weights.shape != values.shape:
            raise ValueError(
                f"{name} must match the probabilities' shape {tuple(values.shape)}; "
                f"got {tuple(weights.shape)}"
            )
        if bool((weights < 0).any()):
            raise ValueError(f"{name} must be non-negative")
        return torch.where(weights > 0, weights * values, torch.zeros_like(values)).sum()

    return expect(torch.log(d_real_prob), real_weights, "real_weights") + expect(
        torch.log1p(-d_fake_prob), fake_weights, "fake_weights"
    )


# --------------------------------------------------------------------------- registry

GAN_LOSSES: Mapping[str, tuple[LossFn, LossFn]] = {
    "minimax": (minimax_d_loss, minimax_g_loss),
    "nonsaturating": (minimax_d_loss, nonsaturating_g_loss),
    "lsgan": (lsgan_d_loss, lsgan_g_loss),
    "wgan": (wgan_critic_loss, wgan_g_loss),
    # the penalty is added separately with gradient_penalty(critic, real, fake, ...)
    "wgan-gp": (wgan_critic_loss, wgan_g_loss),
}
"""GAN loss pairs ``(d_loss(real, fake), g_loss(fake))`` by name."""


def make_gan_loss(name: str, **kwargs: float) -> tuple[LossFn, LossFn]:
    """Return ``(d_loss, g_loss)`` for ``name`` with keyword options bound.

    Each option goes to whichever of the two functions accepts it, e.g.
    ``make_gan_loss("lsgan", a=-1, b=1, c=0)``. An option neither accepts is a ValueError.

    >>> d_loss, g_loss = make_gan_loss("nonsaturating")
    >>> float(g_loss(torch.zeros(3))) == float(torch.log(torch.tensor(2.0)))
    True
    """
    d_loss, g_loss = choose("GAN loss", name, GAN_LOSSES)
    d_params = set(inspect.signature(d_loss).parameters) - {"real", "fake", "real_logits", "fake_logits"}
    g_params = set(inspect.signature(g_loss).parameters) - {"fake", "fake_logits"}
    unknown = sorted(set(kwargs) - d_params - g_params)
    if unknown:
        valid = ", ".join(sorted(d_params | g_params)) or "none"
        raise ValueError(f"unknown option(s) {unknown} for GAN loss {name!r}; valid options are: {valid}")
    for key, value in kwargs.items():
        _number(value, key)
    d_kw = {k: v for k, v in kwargs.items() if k in d_params}
    g_kw = {k: v for k, v in kwargs.items() if k in g_params}
    return (partial(d_loss, **d_kw) if d_kw else d_loss), (partial(g_loss, **g_kw) if g_kw else g_loss)
