"""Discrete DDPM / DDIM / DPM-Solver++: genlab against diffusers' schedulers.

Time conventions (the thing to get right)
-----------------------------------------
diffusers indexes the training chain by ``timestep`` i = 0..T-1 with
``alphas_cumprod[i] = prod_{j <= i} (1 - beta_j)`` (betas linear over T entries), so its
timestep i is the *first noisy step after i + 1 betas*. genlab's ``DDPMSchedule`` counts
k = 0..T with alpha_bar_0 = 1 (k = 0 is clean data) and puts step k at flow-matching time
t_k = 1 - k / T (t = 0 noise, t = 1 data). Hence

    diffusers timestep i  <->  genlab step k = i + 1  <->  genlab time t = 1 - (i + 1) / T,

and diffusers' "previous timestep -1" (``final_alpha_cumprod = 1`` for DDIM with
``set_alpha_to_one``, ``final_sigmas_type="zero"`` for DPM-Solver) is genlab's k = 0 (t = 1).
A genlab network is wrapped for diffusers as eps(x, i) = net(x, 1 - (i + 1) / T).

Grids: genlab's ``ddpm_grid(schedule, n)`` is k = T, T - T/n, ..., T/n, 0. diffusers'
``timestep_spacing="trailing"`` gives i = T - 1, T - 1 - T/n, ..., T/n - 1, i.e. k = T, ...,
T/n, then the final jump to k = 0: the *same* grid whenever n divides T. "leading" (DDIM's
default) is i = (n - 1) T/n, ..., 0, i.e. k = T - T/n + 1, ..., 1 then 0: it never visits pure
noise k = T, and is reproduced in genlab by an explicit ``TimeGrid``. DDIM with "linspace"
evaluates the network at ``linspace(0, T - 1, n).round()`` but steps to i - T // n, which is
not the next evaluated timestep, so no grid reproduces it (compared against the truth only).

Part 1 (agreement, float32 like a user would run it): alphas_cumprod against genlab's
alpha_t^2; one DDIM (eta = 0) update and one DDPM posterior update from the same x_k and the
same epsilon; the whole 1000-step DDPM chain with a shared ``torch.Generator``; deterministic
DDIM and DPM-Solver++ trajectories driven by the *exact* epsilon of Gaussian data
N(mu, s^2 I), whose marginal at step k is N(sqrt(ab_k) mu, (ab_k s^2 + 1 - ab_k) I), so

    eps*(x, k) = E[eps | x_k = x] = sqrt(1 - ab_k) (x - sqrt(ab_k) mu) / (ab_k s^2 + 1 - ab_k).

With this model every update is affine in x, so the final law is Gaussian and its mean and
std are computed exactly by pushing (mean, mean + std) of x_T through the sampler.

Part 2 (quality at equal NFE): one epsilon-prediction MLP trained by genlab (``moons_ddpm``)
is sampled from the same x_T by genlab's samplers and by diffusers' ``step`` loops at NFE
10, 20, 50, 100 (+ 1000 for DDPM); W2 (``genlab.metrics.wasserstein2``) against held-out
data, over several x_T seeds, and sampling wall time.

    python benchmarks/schedulers.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _env import machine
from _render import generic, table, write

from genlab.app import runs
from genlab.app.train import train
from genlab.metrics import wasserstein2
from genlab.paths import DDPMSchedule, GaussianPath, Prediction
from genlab.samplers.ddim import ddim, ddpm_ancestral, ddpm_grid, dpm_solver_pp
from genlab.samplers.field import PredictionField
from genlab.solvers import TimeGrid

T = 1000
BETA_START, BETA_END = 1e-4, 0.02
STEP_COUNTS = (10, 20, 50)  # exact-model trajectories
NFES = (10, 20, 50, 100)  # trained model
DEFAULTS = {"train_steps": 4000, "n_eval": 2000, "sample_seeds": 3, "n_exact": 4000}
QUICK = {"train_steps": 150, "n_eval": 500, "sample_seeds": 1, "n_exact": 500}
MU, STD = (1.5, -0.5), 0.5  # the Gaussian target of part 1
DISTS = ("torch", "numpy", "scipy", "POT", "diffusers", "genlab")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# the two libraries' objects
# --------------------------------------------------------------------------------------


def diffusers_schedulers() -> dict[str, Any]:
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    common = {"num_train_timesteps": T, "beta_start": BETA_START, "beta_end": BETA_END}
    common["beta_schedule"] = "linear"
    return {
        "DDIMScheduler": lambda spacing="trailing": DDIMScheduler(
            **common, clip_sample=False, set_alpha_to_one=True, timestep_spacing=spacing
        ),
        "DDPMScheduler": lambda variance="fixed_large": DDPMScheduler(
            **common, clip_sample=False, variance_type=variance
        ),
        "DPMSolverMultistepScheduler": lambda spacing="trailing": DPMSolverMultistepScheduler(
            **common, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing=spacing
        ),
    }


def in_float64(scheduler: Any) -> Any:
    """The same diffusers scheduler with its tables recomputed in float64 (the algorithm
    unchanged): separates diffusers' float32 tables from differences of method."""
    betas = torch.linspace(BETA_START, BETA_END, T, dtype=torch.float64)
    scheduler.betas = betas
    scheduler.alphas = 1.0 - betas
    scheduler.alphas_cumprod = torch.cumprod(1.0 - betas, 0)
    scheduler.one = torch.tensor(1.0, dtype=torch.float64)
    if hasattr(scheduler, "final_alpha_cumprod"):
        scheduler.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return scheduler


def genlab_time(i: torch.Tensor | int) -> torch.Tensor:
    """genlab time of diffusers timestep i (genlab step k = i + 1)."""
    return 1.0 - (torch.as_tensor(i, dtype=torch.float64) + 1) / T


def grid_from_timesteps(timesteps: torch.Tensor) -> TimeGrid:
    """genlab grid visiting diffusers' timesteps in order, then k = 0 (t = 1)."""
    ks = torch.cat([timesteps.to(torch.float64) + 1, torch.zeros(1, dtype=torch.float64)])
    return TimeGrid(1.0 - ks / T)


EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (B, D), genlab t (B,)) -> eps


def diffusers_loop(scheduler: Any, eps_fn: EpsFn, x: torch.Tensor, n: int, gen: Any = None) -> torch.Tensor:
    """The usual diffusers sampling loop: set_timesteps, then step over scheduler.timesteps."""
    scheduler.set_timesteps(n)
    with torch.no_grad():
        for i in scheduler.timesteps:
            tb = genlab_time(int(i)).to(x.dtype).expand(x.shape[0])
            eps = eps_fn(x, tb)
            kw = {"generator": gen} if gen is not None else {}
            x = scheduler.step(eps, i, x, **kw).prev_sample
    return x


# --------------------------------------------------------------------------------------
# part 1: agreement
# --------------------------------------------------------------------------------------


def exact_eps(schedule: DDPMSchedule) -> EpsFn:
    """E[eps | x_t = x] for data N(MU, STD^2 I) on genlab's DDPM path (t = 1 - k / T)."""
    mu = torch.tensor(MU, dtype=torch.float64)

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v = schedule.values(t.to(torch.float64))
        a, s = v.alpha[:, None], v.sigma[:, None]  # (B, 1)
        out = s * (x.double() - a * mu) / (a**2 * STD**2 + s**2)
        return out.to(x.dtype)

    return fn


def schedule_agreement(schedule: DDPMSchedule, make: dict[str, Any]) -> dict[str, Any]:
    sched = make["DDPMScheduler"]()
    ab_peer = sched.alphas_cumprod.double()  # (T,), float32 values
    ab_ours = schedule.values(genlab_time(torch.arange(T))).alpha ** 2  # (T,)
    ab_table = schedule.alpha_bar(torch.arange(1, T + 1))  # the integer table
    ab_f64 = torch.cumprod(1 - torch.linspace(BETA_START, BETA_END, T, dtype=torch.float64), 0)
    return {
        "mapping": "diffusers timestep i <-> genlab k = i + 1 <-> t = 1 - (i + 1) / T",
        "diffusers_dtype": str(sched.alphas_cumprod.dtype),
        "max_abs_err": float((ab_peer - ab_ours).abs().max()),
        "max_rel_err": float(((ab_peer - ab_ours) / ab_ours).abs().max()),
        "max_rel_err_genlab_vs_float64_cumprod": float(((ab_ours - ab_f64) / ab_f64).abs().max()),
        "max_rel_err_diffusers_vs_float64_cumprod": float(((ab_peer - ab_f64) / ab_f64).abs().max()),
        "max_rel_err_genlab_table_vs_values": float(((ab_table - ab_ours) / ab_ours).abs().max()),
        "off_by_one_max_rel_err": float(((ab_peer[1:] - ab_ours[:-1]) / ab_ours[:-1]).abs().max()),
    }


def one_step_agreement(schedule: DDPMSchedule, make: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """One DDIM (eta = 0) update and one DDPM posterior update, same x_k, same eps."""
    path = GaussianPath(schedule)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i_from, i_to in ((999, 899), (499, 479), (99, 89), (9, -1)):
        x = torch.randn(256, 2, generator=g)  # (B, 2)
        eps = torch.randn(256, 2, generator=g)
        const = PredictionField(path, lambda x_, t_, e=eps: e, Prediction.NOISE)
        # DDIM: diffusers with n steps so that prev_timestep = i_to (trailing)
        ddim_s = make["DDIMScheduler"]("trailing")
        ddim_s.set_timesteps(T // (i_from - i_to))
        peer = ddim_s.step(eps, i_from, x).prev_sample
        grid = TimeGrid([float(genlab_time(i_from)), float(genlab_time(i_to))])
        ours = ddim(const, x, grid, eta=0.0)
        peer64 = in_float64(ddim_s).step(eps.double(), i_from, x.double()).prev_sample
        const64 = PredictionField(path, lambda x_, t_, e=eps: e.double(), Prediction.NOISE)
        ours64 = ddim(const64, x.double(), grid, eta=0.0)
        rows.append(
            {
                "update": "DDIM eta=0",
                "from_k": i_from + 1,
                "to_k": i_to + 1,
                "max_abs_diff": float((peer - ours).abs().max()),
                "max_abs_diff_float64": float((peer64 - ours64).abs().max()),
                "max_abs_update": float((peer - x).abs().max()),
            }
        )
    for i in (999, 500, 100, 1, 0):
        x = torch.randn(256, 2, generator=g)
        eps = torch.randn(256, 2, generator=g)
        sched = make["DDPMScheduler"]("fixed_large")
        peer = sched.step(eps, i, x, generator=torch.Generator().manual_seed(seed + i)).prev_sample
        # genlab's ancestral update (ddpm_ancestral's loop body, Ho et al. Alg. 2), same z
        k = i + 1
        beta = float(schedule.betas[k])
        ab = float(schedule.alpha_bar(torch.tensor(k)))
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + i))
        ours = (x - beta / (1 - ab) ** 0.5 * eps) / (1 - beta) ** 0.5 + (beta**0.5 if k > 1 else 0.0) * z
        large64 = in_float64(make["DDPMScheduler"]("fixed_large"))
        gen64 = torch.Generator().manual_seed(seed + i)
        peer64 = large64.step(eps.double(), i, x.double(), generator=gen64).prev_sample
        z64 = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + i), dtype=torch.float64)
        x64, eps64 = x.double(), eps.double()
        ours64 = (x64 - beta / (1 - ab) ** 0.5 * eps64) / (1 - beta) ** 0.5 + (
            beta**0.5 if k > 1 else 0.0
        ) * z64
        # the posterior mean alone: genlab's DDIM with eta = 1 over one adjacent step (adds no
        # noise on its last step) against diffusers' fixed_small posterior mean
        field = PredictionField(path, lambda x_, t_, e=eps: e, Prediction.NOISE)
        mean_ours = ddim(field, x, TimeGrid([float(genlab_time(i)), float(genlab_time(i - 1))]), eta=1.0)
        small = make["DDPMScheduler"]("fixed_small")
        gz = torch.Generator().manual_seed(seed + i)
        with_noise = small.step(eps, i, x, generator=gz).prev_sample
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + i))
        var = 0.0 if i == 0 else float(small._get_variance(i))  # noqa: SLF001 - beta_tilde_k
        mean_peer = with_noise - var**0.5 * z
        rows.append(
            {
                "update": "DDPM posterior (fixed_large = genlab Alg. 2, same z)",
                "from_k": k,
                "to_k": k - 1,
                "max_abs_diff": float((peer - ours).abs().max()),
                "max_abs_diff_float64": float((peer64 - ours64).abs().max()),
                "max_abs_update": float((peer - x).abs().max()),
                "posterior_mean_max_abs_diff_vs_ddim_eta1": float((mean_peer - mean_ours).abs().max()),
            }
        )
    return rows


def trajectory_agreement(
    schedule: DDPMSchedule, make: dict[str, Any], n: int, seed: int, step_counts: tuple[int, ...]
) -> list[dict[str, Any]]:
    path = GaussianPath(schedule)
    eps_fn = exact_eps(schedule)
    field = PredictionField(path, eps_fn, Prediction.NOISE)
    mu = torch.tensor(MU, dtype=torch.float64)
    a_T = float(schedule.alpha_bar(torch.tensor(T))) ** 0.5
    m_T = a_T * mu  # (2,) exact marginal of x_T
    s_T = (a_T**2 * STD**2 + 1 - a_T**2) ** 0.5
    x_T = (
        m_T + s_T * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ).float()

    def exact_law(fn: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
        """Exact final mean / std (float64 run of the same sampler) and their errors."""
        base = torch.stack([m_T, m_T + s_T])  # (2, 2): mean, mean + std
        y = fn(base)
        mean, std = y[0], (y[1] - y[0]).abs()
        return {
            "mean_err": float((mean - mu).abs().max()),
            "std_err": float((std - STD).abs().max()),
        }

    rows = []
    for n_steps in step_counts:
        for method in ("DDIM", "DPM-Solver++(2M)"):
            spacings = ("trailing", "leading", "linspace")
            for spacing in spacings:
                key = "DDIMScheduler" if method == "DDIM" else "DPMSolverMultistepScheduler"

                def peer(
                    x: torch.Tensor, key: str = key, spacing: str = spacing, n_steps: int = n_steps
                ) -> torch.Tensor:
                    return diffusers_loop(make[key](spacing), eps_fn, x, n_steps)

                sched = make[key](spacing)
                sched.set_timesteps(n_steps)
                timesteps = sched.timesteps.clone()
                consistent = method != "DDIM" or spacing in ("trailing", "leading")
                grid = grid_from_timesteps(timesteps) if consistent else None
                genlab_fn = ddim if method == "DDIM" else dpm_solver_pp

                def ours(x: torch.Tensor, grid: TimeGrid | None = grid, fn: Any = genlab_fn) -> torch.Tensor:
                    return fn(field, x, grid)

                t0 = time.perf_counter()
                x_peer = peer(x_T)
                peer_s = time.perf_counter() - t0
                row: dict[str, Any] = {
                    "method": method,
                    "steps": n_steps,
                    "diffusers_spacing": spacing,
                    "diffusers_timesteps_head": [int(v) for v in timesteps[:3]] + [int(timesteps[-1])],
                    "diffusers": exact_law(peer),
                    "diffusers_empirical": {
                        "mean_err": float((x_peer.double().mean(0) - mu).abs().max()),
                        "std_err": float((x_peer.double().std(0) - STD).abs().max()),
                    },
                    "diffusers_s": peer_s,
                }
                if grid is not None:
                    same = grid_from_timesteps(timesteps)
                    default = ddpm_grid(schedule, n_steps)
                    row["genlab_grid_equals_ddpm_grid"] = bool(
                        same.times.shape == default.times.shape
                        and torch.allclose(same.times, default.times, atol=1e-12)
                    )
                    t0 = time.perf_counter()
                    x_ours = ours(x_T)
                    row["genlab_s"] = time.perf_counter() - t0
                    row["genlab"] = exact_law(ours)
                    row["max_abs_diff_samples"] = float((x_peer - x_ours).abs().max())
                else:
                    row["note"] = (
                        "diffusers DDIM 'linspace' evaluates at linspace(0, T-1, n) but steps to "
                        "t - T // n: no grid reproduces it"
                    )
                rows.append(row)
        # genlab's own default grid, for reference
        for method, fn in (("DDIM", ddim), ("DPM-Solver++(2M)", dpm_solver_pp)):
            grid = ddpm_grid(schedule, n_steps)
            rows.append(
                {
                    "method": method,
                    "steps": n_steps,
                    "diffusers_spacing": "- (genlab ddpm_grid)",
                    "genlab": exact_law(lambda x, fn=fn, grid=grid: fn(field, x, grid)),
                }
            )
    return rows


def ddpm_chain_agreement(schedule: DDPMSchedule, make: dict[str, Any], n: int, seed: int) -> dict[str, Any]:
    """All T ancestral steps, exact eps, one shared torch.Generator stream for the noise."""
    path = GaussianPath(schedule)
    eps_fn = exact_eps(schedule)
    field = PredictionField(path, eps_fn, Prediction.NOISE)
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    t0 = time.perf_counter()
    ours = ddpm_ancestral(field, x_T, torch.Generator().manual_seed(seed + 1))
    ours_s = time.perf_counter() - t0
    sched = make["DDPMScheduler"]("fixed_large")
    t0 = time.perf_counter()
    peer = diffusers_loop(sched, eps_fn, x_T, T, torch.Generator().manual_seed(seed + 1))
    peer_s = time.perf_counter() - t0
    mu = torch.tensor(MU)
    out = {
        "n": n,
        "max_abs_diff_samples": float((peer - ours).abs().max()),
        "genlab_s": ours_s,
        "diffusers_s": peer_s,
    }
    for name, x in (("genlab", ours), ("diffusers", peer)):
        out[f"{name}_mean_err"] = float((x.mean(0) - mu).abs().max())
        out[f"{name}_std_err"] = float((x.std(0) - STD).abs().max())
    return out


def end_gap_effect(schedule: DDPMSchedule) -> dict[str, float]:
    """genlab's last grid time t = 1 is evaluated at 1 - T_END_GAP: the residual sigma there."""
    v = schedule.values(torch.tensor([1.0], dtype=torch.float64))
    return {"alpha_at_t1": float(v.alpha), "sigma_at_t1": float(v.sigma)}


# --------------------------------------------------------------------------------------
# part 2: a trained model
# --------------------------------------------------------------------------------------


def train_model(steps: int, work: Path) -> tuple[Any, float, dict[str, Any]]:
    over = [f"train.steps={steps}", "train.ckpt_every=1000000", "train.threads=1", "train.log_every=500"]
    over.append(f"train.warmup_steps={min(200, steps // 10)}")
    cfg = runs.resolve_config("moons_ddpm", over)
    t0 = time.perf_counter()
    train(cfg, work, overwrite=True, progress=False)
    train_s = time.perf_counter() - t0
    run = runs.load_run(work)
    return run, train_s, {"config": "moons_ddpm", "overrides": over, "ema": run.ema, "step": run.step}


def quality(run: Any, make: dict[str, Any], nfes: tuple[int, ...], n: int, seeds: int) -> dict[str, Any]:
    model = run.model
    schedule: DDPMSchedule = model.schedule
    field = model.field()
    net = model.net

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return net(x, t)

    data = run.dataset
    reference = data.sample(n, torch.Generator().manual_seed(2_000_003))
    g = torch.Generator().manual_seed(2_000_004)
    floor = wasserstein2(data.sample(n, g), reference)

    methods: list[tuple[str, str, int, Callable[[torch.Tensor, int], torch.Tensor]]] = []
    for nfe in nfes:
        grid = ddpm_grid(schedule, nfe)
        methods += [
            ("DDIM eta=0", "genlab ddim, ddpm_grid", nfe, lambda x, s, grid=grid: ddim(field, x, grid)),
            (
                "DDIM eta=0",
                "diffusers DDIMScheduler trailing",
                nfe,
                lambda x, s, nfe=nfe: diffusers_loop(make["DDIMScheduler"]("trailing"), eps_fn, x, nfe),
            ),
            (
                "DDIM eta=0",
                "diffusers DDIMScheduler leading (default)",
                nfe,
                lambda x, s, nfe=nfe: diffusers_loop(make["DDIMScheduler"]("leading"), eps_fn, x, nfe),
            ),
            (
                "DPM-Solver++(2M)",
                "genlab dpm_solver_pp, ddpm_grid",
                nfe,
                lambda x, s, grid=grid: dpm_solver_pp(field, x, grid),
            ),
            (
                "DPM-Solver++(2M)",
                "diffusers DPMSolverMultistep trailing",
                nfe,
                lambda x, s, nfe=nfe: diffusers_loop(
                    make["DPMSolverMultistepScheduler"]("trailing"), eps_fn, x, nfe
                ),
            ),
            (
                "DPM-Solver++(2M)",
                "diffusers DPMSolverMultistep linspace (default)",
                nfe,
                lambda x, s, nfe=nfe: diffusers_loop(
                    make["DPMSolverMultistepScheduler"]("linspace"), eps_fn, x, nfe
                ),
            ),
            (
                "DDIM eta=1 / DDPM (beta~)",
                "genlab ddim eta=1, ddpm_grid",
                nfe,
                lambda x, s, grid=grid: ddim(
                    field, x, grid, eta=1.0, generator=torch.Generator().manual_seed(s)
                ),
            ),
            (
                "DDIM eta=1 / DDPM (beta~)",
                "diffusers DDPMScheduler fixed_small trailing",
                nfe,
                lambda x, s, nfe=nfe: diffusers_loop(
                    ddpm_trailing(make), eps_fn, x, nfe, torch.Generator().manual_seed(s)
                ),
            ),
        ]
    methods += [
        (
            "DDPM ancestral (beta)",
            "genlab ddpm_ancestral",
            T,
            lambda x, s: ddpm_ancestral(field, x, torch.Generator().manual_seed(s)),
        ),
        (
            "DDPM ancestral (beta)",
            "diffusers DDPMScheduler fixed_large",
            T,
            lambda x, s: diffusers_loop(
                make["DDPMScheduler"]("fixed_large"), eps_fn, x, T, torch.Generator().manual_seed(s)
            ),
        ),
        (
            "DDPM ancestral (beta~)",
            "diffusers DDPMScheduler fixed_small (default)",
            T,
            lambda x, s: diffusers_loop(
                make["DDPMScheduler"]("fixed_small"), eps_fn, x, T, torch.Generator().manual_seed(s)
            ),
        ),
    ]
    rows = []
    for method, impl, nfe, fn in methods:
        w2s, secs, finals = [], [], []
        for s in range(seeds):
            x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(1000 + s))
            t0 = time.perf_counter()
            with torch.no_grad():
                x = fn(x_T, 5000 + s)
            secs.append(time.perf_counter() - t0)
            w2s.append(wasserstein2(x, reference))
            finals.append(x)
        rows.append(
            {
                "method": method,
                "implementation": impl,
                "nfe": nfe,
                "w2": w2s,
                "w2_mean": float(np.mean(w2s)),
                "w2_std": float(np.std(w2s, ddof=1)) if len(w2s) > 1 else 0.0,
                "seconds": secs,
                "seconds_median": float(np.median(secs)),
                "seconds_min": float(np.min(secs)),
                "_x": finals,
            }
        )
        log(
            f"[schedulers] {method:<26} {impl:<48} NFE {nfe:<5} W2 {np.mean(w2s):.4f}  {np.median(secs):.2f}s"
        )
    # max |diff| between the pairs that should coincide
    pairs = {
        ("genlab ddim, ddpm_grid", "diffusers DDIMScheduler trailing"),
        ("genlab dpm_solver_pp, ddpm_grid", "diffusers DPMSolverMultistep trailing"),
        ("genlab ddim eta=1, ddpm_grid", "diffusers DDPMScheduler fixed_small trailing"),
        ("genlab ddpm_ancestral", "diffusers DDPMScheduler fixed_large"),
    }
    by_key = {(r["implementation"], r["nfe"]): r for r in rows}
    for r in rows:
        for a, b in pairs:
            if r["implementation"] == b and (a, r["nfe"]) in by_key:
                other = by_key[(a, r["nfe"])]
                r["max_abs_diff_vs_genlab"] = max(
                    float((x - y).abs().max()) for x, y in zip(r["_x"], other["_x"], strict=True)
                )
    for r in rows:
        del r["_x"]
    return {"n": n, "x_T_seeds": [1000 + s for s in range(seeds)], "floor_w2": floor, "rows": rows}


def ddpm_trailing(make: dict[str, Any]) -> Any:
    from diffusers import DDPMScheduler

    s = make["DDPMScheduler"]("fixed_small")
    return DDPMScheduler.from_config(s.config, timestep_spacing="trailing")


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


def e(v: float | None) -> str:
    return "-" if v is None else f"{v:.1e}"


def tables(res: dict[str, Any]) -> str:
    """Every table of a result (agreement, quality at equal NFE) as markdown."""
    cfg, env = res["config"], res["environment"]
    v = env["versions"]
    a = res["agreement"]
    sa = a["alphas_cumprod"]
    parts = [
        "## Discrete DDPM / DDIM / DPM-Solver++: genlab vs diffusers",
        "",
        f"Linear betas {BETA_START}..{BETA_END}, T = {T}. CPU: {env['cpu_model'] or '?'} "
        f"({env['cpu_count']} cores), torch {env['torch']} with {env['torch_threads']} thread(s), "
        f"diffusers {v['diffusers']}, genlab {v['genlab']} (commit {str(env['genlab_git']['commit'])[:10]}). "
        f"Load average {env['loadavg_start'][0]:.2f} at start, {env['loadavg_end'][0]:.2f} at end; "
        f"total {res['total_seconds'] / 60:.1f} min. diffusers schedulers built with clip_sample=False "
        "(its default True clips x0-predictions to [-1, 1]), DDIM set_alpha_to_one=True, DPM-Solver++ "
        "solver_order=2, final_sigmas_type='zero'.",
        "",
        "### Agreement",
        "",
        f"alphas_cumprod (diffusers, {sa['diffusers_dtype']}) at timestep i vs genlab alpha_t^2 at "
        f"t = 1 - (i + 1)/T: max abs err {e(sa['max_abs_err'])}, max rel err {e(sa['max_rel_err'])} "
        "(diffusers' float32 cumprod vs a float64 cumprod: "
        f"{e(sa['max_rel_err_diffusers_vs_float64_cumprod'])}; "
        f"genlab vs float64: {e(sa['max_rel_err_genlab_vs_float64_cumprod'])}). With the naive mapping "
        f"k = i (off by one) the rel err would be {e(sa['off_by_one_max_rel_err'])}.",
        f"genlab's last grid time t = 1 is evaluated at 1 - T_END_GAP: sigma there is "
        f"{a['end_gap']['sigma_at_t1']:.2e} (diffusers: exactly 0).",
        "",
        "One update from the same x_k (256 x 2, float32) and the same epsilon:",
        "",
    ]
    rows = []
    for r in a["one_step"]:
        rows.append(
            [
                r["update"],
                f"{r['from_k']} -> {r['to_k']}",
                e(r["max_abs_diff"]),
                e(r["max_abs_diff_float64"]),
                f"{r['max_abs_update']:.2e}",
                e(r.get("posterior_mean_max_abs_diff_vs_ddim_eta1")),
            ]
        )
    parts.extend(
        table(
            [
                "update",
                "genlab k",
                "max abs diff (float32)",
                "max abs diff (both float64)",
                "max abs size of the update",
                "posterior mean: diffusers fixed_small vs genlab DDIM eta=1",
            ],
            rows,
        )
    )
    c = a["ddpm_chain"]
    parts += [
        "",
        f"Whole DDPM chain (T = {T} ancestral steps, exact eps of N({MU}, {STD}^2 I), n = {c['n']}, "
        f"one shared torch.Generator; diffusers variance_type='fixed_large' = genlab's sigma_k^2 = beta_k): "
        f"max abs diff {e(c['max_abs_diff_samples'])}; mean / std error vs target: genlab "
        f"{c['genlab_mean_err']:.3f} / {c['genlab_std_err']:.3f}, diffusers {c['diffusers_mean_err']:.3f} / "
        f"{c['diffusers_std_err']:.3f} (Monte Carlo, n = {c['n']}); "
        f"{c['genlab_s']:.2f} s / {c['diffusers_s']:.2f} s.",
        "",
        f"Deterministic trajectories with the exact epsilon of N({MU}, {STD}^2 I), x_T from the exact "
        f"k = T marginal (n = {cfg['n_exact']}, seed {cfg['seed']}, float32). 'exact' = mean / std error of "
        "the final law computed exactly (float64 push-forward of the affine sampler); the genlab columns "
        "use the grid that reproduces diffusers' timesteps:",
        "",
    ]
    rows = []
    for r in a["trajectories"]:
        if "diffusers" not in r:
            continue
        g = r.get("genlab")
        rows.append(
            [
                r["method"],
                str(r["steps"]),
                r["diffusers_spacing"],
                str(r["diffusers_timesteps_head"][:3])[1:-1] + f", ..., {r['diffusers_timesteps_head'][-1]}",
                {True: "yes", False: "no"}.get(r.get("genlab_grid_equals_ddpm_grid"), "-"),
                e(r.get("max_abs_diff_samples")),
                f"{r['diffusers']['mean_err']:.1e} / {r['diffusers']['std_err']:.1e}",
                "-" if g is None else f"{g['mean_err']:.1e} / {g['std_err']:.1e}",
            ]
        )
    for r in a["trajectories"]:
        if "diffusers" in r:
            continue
        g = r["genlab"]
        rows.append(
            [
                r["method"],
                str(r["steps"]),
                "genlab ddpm_grid",
                "k = T, ..., 0",
                "yes",
                "-",
                "-",
                f"{g['mean_err']:.1e} / {g['std_err']:.1e}",
            ]
        )
    parts.extend(
        table(
            [
                "method",
                "steps",
                "diffusers spacing",
                "diffusers timesteps",
                "= genlab ddpm_grid",
                "max abs diff of samples",
                "diffusers exact mean / std err",
                "genlab exact mean / std err",
            ],
            rows,
        )
    )
    q = res["quality"]
    tr = res["training"]
    parts += [
        "",
        f"### Quality at equal NFE: one genlab-trained epsilon-MLP on moons ({tr['steps']} steps of "
        f"`moons_ddpm`, batch {tr['batch']}, Adam lr {tr['lr']}, seed {tr['seed']}, EMA weights: "
        f"{tr['ema']}, {tr['train_s']:.0f} s on 1 thread)",
        "",
        f"W2 (`genlab.metrics.wasserstein2`) of n = {q['n']} samples against {q['n']} held-out points, "
        f"mean ± std over {len(q['x_T_seeds'])} x_T seeds (the same x_T for every row); floor (data vs data) "
        f"{q['floor_w2']:.4f}. 'max abs diff' compares with the genlab row that should coincide (same grid, "
        "same x_T, and for the stochastic rows the same torch.Generator stream). Seconds: min and median "
        "over the x_T seeds of the wall time of one sampling run of n points (the min is the least "
        "disturbed by other processes on a shared machine; see the load average above).",
        "",
    ]
    rows = []
    for r in q["rows"]:
        rows.append(
            [
                r["method"],
                r["implementation"],
                str(r["nfe"]),
                f"{r['w2_mean']:.4f} ± {r['w2_std']:.4f}",
                e(r.get("max_abs_diff_vs_genlab")),
                f"{r['seconds_min']:.2f} / {r['seconds_median']:.2f}",
            ]
        )
    parts.extend(
        table(
            ["method", "implementation", "NFE", "W2", "max abs diff vs genlab", "sample s (min / median)"],
            rows,
        )
    )
    return "\n".join(parts) + "\n"


def render(name: str, data: dict[str, Any], path: Path) -> list[str]:
    """The markdown of a result JSON: the run facts, then the tables."""
    return generic(name, data, path, tables, "total_seconds")


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument(
        "--train-steps", type=int, default=None, help="training steps of moons_ddpm (default 4000)"
    )
    p.add_argument("--n-eval", type=int, default=None, help="samples per W2 (default 2000)")
    p.add_argument("--sample-seeds", type=int, default=None, help="x_T seeds per row (default 3)")
    p.add_argument("--n-exact", type=int, default=None, help="points of the exact-model runs (default 4000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the agreement checks")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--quick", action="store_true", help="smoke run (< 1 min)")
    p.add_argument(
        "--out", type=Path, default=None, help="JSON output (default results/schedulers[_quick].json)"
    )
    p.add_argument("--work", type=Path, default=None, help="run directory (default: a temporary one)")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else DEFAULTS
    for key in ("train_steps", "n_eval", "sample_seeds", "n_exact"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    if args.out is None:
        args.out = (
            Path(__file__).resolve().parent / "results" / f"schedulers{'_quick' if args.quick else ''}.json"
        )
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    env = machine(args.threads, DISTS)
    make = diffusers_schedulers()
    schedule = DDPMSchedule(T, BETA_START, BETA_END)
    steps = STEP_COUNTS[:1] if args.quick else STEP_COUNTS
    nfes = NFES[:1] if args.quick else NFES
    log("[schedulers] agreement ...")
    agreement = {
        "alphas_cumprod": schedule_agreement(schedule, make),
        "end_gap": end_gap_effect(schedule),
        "one_step": one_step_agreement(schedule, make, args.seed),
        "ddpm_chain": ddpm_chain_agreement(schedule, make, args.n_exact, args.seed),
        "trajectories": trajectory_agreement(schedule, make, args.n_exact, args.seed, steps),
    }
    log(f"[schedulers] training moons_ddpm for {args.train_steps} steps ...")
    with tempfile.TemporaryDirectory(prefix="bench_schedulers_") as tmp:
        work = args.work or Path(tmp) / "run"
        run, train_s, info = train_model(args.train_steps, work)
        tc = run.cfg.train
        training = {
            "steps": args.train_steps,
            "batch": tc.batch_size,
            "lr": tc.lr,
            "seed": tc.seed,
            "train_s": train_s,
            **info,
        }
        log(f"[schedulers] trained in {train_s:.0f} s; sampling ...")
        q = quality(run, make, nfes, args.n_eval, args.sample_seeds)
    env["loadavg_end"] = list(os.getloadavg())
    result = {
        "benchmark": "schedulers",
        "config": {
            "T": T,
            "beta_start": BETA_START,
            "beta_end": BETA_END,
            "quick": args.quick,
            "seed": args.seed,
            "n_exact": args.n_exact,
            "gaussian_target": {"mu": MU, "std": STD},
            "exact_step_counts": list(steps),
            "nfes": list(nfes),
            "n_eval": args.n_eval,
            "sample_seeds": args.sample_seeds,
            "threads": args.threads,
        },
        "environment": env,
        "agreement": agreement,
        "training": training,
        "quality": q,
        "total_seconds": time.perf_counter() - t_start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(write(render, args.out, result))
    log(f"[schedulers] wrote {args.out} in {result['total_seconds'] / 60:.1f} min")
    return result


if __name__ == "__main__":
    main()
