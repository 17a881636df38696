"""Affine coupling flows on 2D toys: genlab's RealNVP against zuko's RealNVP.

Peer: ``zuko.flows.RealNVP`` (= ``zuko.flows.NICE``; zuko 1.6 has no separate RealNVP
class body) with its default univariate transform ``MonotonicAffineTransform``
(y = exp(a') x + b, with the soft-clamped log-scale a' = a / (1 + |a / log 1e-3|)), i.e. an
affine coupling flow: ``transforms`` ``GeneralCouplingTransform`` layers with alternating
masks [1, 0], [0, 1], ... (1 = conditioning coordinate), each with its own ``zuko.nn.MLP``
hyper-network, and a standard normal base. genlab's ``RealNVP((2,), n_layers, hidden)``
alternates the same two masks; its conditioner sees the masked 2-vector and outputs (s, t)
for both coordinates (the kept one is masked out), with s = tanh(s') exp(c) (learned c).

Held fixed: number of coupling layers, hidden width and depth (2 hidden layers), activation
(SiLU for both: zuko's default ReLU is overridden), the objective (mean negative
log-likelihood in nats of a batch), Adam with the same learning rate, batch size and number
of steps, the same sequence of data batches (one ``torch.Generator`` per seed, reseeded for
each library), and the same initialisation seed (each library's own initialiser: genlab
zero-initialises the last layer of every conditioner so it starts at the identity; zuko
uses PyTorch's default Linear initialisation). Parameter counts are reported.

Reported per data set: held-out NLL (nats/point, 2000 fresh points) mean ± std over seeds,
the true NLL where the density is known (8gaussians), parameters, train s, sample s, W2 of
samples against held-out data. Exactness check: log p(x) of each flow against a brute-force
change of variables log N(f(x); 0, I) + log|det df/dx| with the Jacobian from
``torch.autograd.functional.jacobian`` (float64), and the inverse round trip.

    python benchmarks/flows.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _env import machine
from _render import generic, table, write
from torch import nn

from genlab.data import make_toy
from genlab.metrics import wasserstein2
from genlab.models.realnvp import RealNVP

LIBRARIES = ("genlab", "zuko")
DATASETS = ("moons", "8gaussians")
DEFAULTS = {"steps": 6000, "seeds": 3, "n_eval": 2000, "layers": 8, "hidden": 128}
QUICK = {"steps": 300, "seeds": 2, "n_eval": 500, "layers": 4, "hidden": 32}
DISTS = ("torch", "numpy", "scipy", "POT", "zuko", "genlab")
EXACT_POINTS = 16  # points of the brute-force change-of-variables check


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# the two flows behind one small interface: log_prob(x) (B,), sample(n, seed) (n, 2)
# --------------------------------------------------------------------------------------


class GenlabFlow:
    def __init__(self, layers: int, hidden: int, seed: int) -> None:
        torch.manual_seed(seed)
        self.module = RealNVP((2,), n_layers=layers, hidden=hidden, depth=2)
        self.how = f"genlab.models.RealNVP((2,), n_layers={layers}, hidden={hidden}, depth=2), SiLU"

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.log_prob(x)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        return self.module.sample(n, generator=torch.Generator().manual_seed(seed)).x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)[0]

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return self.module.inverse(z)


class ZukoFlow:
    def __init__(self, layers: int, hidden: int, seed: int) -> None:
        import zuko

        torch.manual_seed(seed)
        self.module = zuko.flows.RealNVP(
            2, transforms=layers, hidden_features=(hidden, hidden), activation=nn.SiLU
        )
        self.how = (
            f"zuko.flows.RealNVP(2, transforms={layers}, hidden_features=({hidden}, {hidden}), "
            "activation=SiLU) [MonotonicAffineTransform couplings]"
        )

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.module().log_prob(x)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        torch.manual_seed(seed)  # zuko samples from the global RNG
        with torch.no_grad():
            return self.module().sample((n,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module().transform(x)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return self.module().transform.inv(z)


FLOWS = {"genlab": GenlabFlow, "zuko": ZukoFlow}


def n_params(flow: Any) -> int:
    return sum(p.numel() for p in flow.module.parameters())


# --------------------------------------------------------------------------------------
# training and evaluation
# --------------------------------------------------------------------------------------


def train(flow: Any, dataset: Any, steps: int, batch: int, lr: float, data_seed: int) -> dict[str, Any]:
    opt = torch.optim.Adam(flow.module.parameters(), lr=lr)
    g = torch.Generator().manual_seed(data_seed)
    losses = []
    t0 = time.perf_counter()
    for _ in range(steps):
        x = dataset.sample(batch, g).float()  # (B, 2)
        loss = -flow.log_prob(x).mean()  # nats per point
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - t0
    tail = max(1, steps // 10)
    return {
        "train_s": seconds,
        "steps_per_s": steps / seconds,
        "loss_first": losses[0],
        "loss_final": float(np.mean(losses[-tail:])),
        "loss_max_last_half": float(np.max(losses[steps // 2 :])),
        "nonfinite_losses": int(sum(not math.isfinite(v) for v in losses)),
    }


def evaluate(flow: Any, reference: torch.Tensor, n: int, sample_seed: int) -> dict[str, float]:
    with torch.no_grad():
        nll = float(-flow.log_prob(reference).double().mean())
    flow.sample(min(n, 64), sample_seed)  # warm-up (zuko builds its distribution lazily)
    t0 = time.perf_counter()
    x = flow.sample(n, sample_seed)
    sample_s = time.perf_counter() - t0
    finite = bool(torch.isfinite(x).all())
    data_max = float(reference.abs().max())
    return {
        "nll": nll,
        "sample_s": sample_s,
        "max_abs_sample": float(x.abs().max()),
        "frac_samples_beyond_2x_data_range": float((x.abs().amax(1) > 2 * data_max).double().mean()),
        "w2": wasserstein2(x, reference) if finite else float("nan"),
        "samples_finite": finite,
    }


def exactness(flow: Any, points: torch.Tensor) -> dict[str, float]:
    """log p(x) against log N(f(x)) + log|det J_f(x)| with J from autograd, float64."""
    flow.module.double()
    try:
        x = points.double()
        with torch.no_grad():
            lp = flow.log_prob(x)  # (B,)
        brute = []
        for xi in x:
            jac = torch.autograd.functional.jacobian(lambda v: flow.forward(v[None])[0], xi)  # (2, 2)
            z = flow.forward(xi[None])[0].detach()
            log_base = -0.5 * float(z @ z) - math.log(2 * math.pi)
            brute.append(log_base + float(torch.linalg.slogdet(jac).logabsdet))
        brute_t = torch.tensor(brute, dtype=torch.float64)
        with torch.no_grad():
            back = flow.inverse(flow.forward(x))
        return {
            "points": len(x),
            "max_abs_err_logp": float((lp - brute_t).abs().max()),
            "max_abs_logp": float(lp.abs().max()),
            "max_abs_err_inverse": float((back - x).abs().max()),
        }
    finally:
        flow.module.float()


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


def pm(values: list[float], fmt: str = ".3f") -> str:
    arr = np.asarray(values, dtype=float)
    sd = float(np.std(arr, ddof=1)) if len(arr) > 1 else 0.0
    return f"{np.mean(arr):{fmt}} ± {sd:{fmt}}"


def tables(res: dict[str, Any]) -> str:
    """Every table of a result (NLL, W2, exactness) as markdown."""
    cfg, env = res["config"], res["environment"]
    v = env["versions"]
    parts = [
        "## Affine coupling flows: genlab RealNVP vs zuko RealNVP",
        "",
        f"{cfg['layers']} coupling layers, 2 hidden layers of {cfg['hidden']} (SiLU) per conditioner; Adam "
        f"lr {cfg['lr']}, batch {cfg['batch']}, {cfg['steps']} steps, seeds {cfg['seeds']} (init and data "
        f"stream per seed), held-out n = {cfg['n_eval']} (seed {cfg['reference_seed']}). CPU: "
        f"{env['cpu_model'] or '?'} ({env['cpu_count']} cores), torch {env['torch']} with "
        f"{env['torch_threads']} thread(s), zuko {v['zuko']}, genlab {v['genlab']} (commit "
        f"{str(env['genlab_git']['commit'])[:10]}). Load average {env['loadavg_start'][0]:.2f} at start, "
        f"{env['loadavg_end'][0]:.2f} at end; total {res['total_seconds'] / 60:.1f} min.",
        "",
        *[f"- {lib}: `{res['flows'][lib]}`, {res['params'][lib]} parameters" for lib in LIBRARIES],
        "",
        "NLL: nats/point on held-out data (mean ± sample std over seeds; lower is better, the true NLL "
        "is the limit). W2: `genlab.metrics.wasserstein2` between n samples (one pass of the inverse) "
        "and the held-out points. train s: wall time of the whole loop (data sampling included); sample s: "
        "drawing n samples once. max abs sample: the largest |coordinate| among the n samples of each "
        "seed (the held-out data stay within a few units); a few far-out samples dominate W2.",
        "",
    ]
    rows = []
    for ds in cfg["datasets"]:
        d = res["datasets"][ds]
        truth = d["true_nll"]
        for lib in LIBRARIES:
            runs = d["runs"][lib]
            rows.append(
                [
                    ds,
                    lib,
                    pm([r["nll"] for r in runs]),
                    "-" if truth is None else f"{truth:.3f}",
                    pm([r["w2"] for r in runs], ".4f"),
                    f"{d['floor_w2']:.4f}",
                    str(res["params"][lib]),
                    pm([r["train_s"] for r in runs], ".1f"),
                    pm([r["sample_s"] * 1e3 for r in runs], ".1f"),
                    pm([r["loss_final"] for r in runs]),
                    " / ".join(f"{r['max_abs_sample']:.3g}" for r in runs),
                ]
            )
    parts.extend(
        table(
            [
                "dataset",
                "library",
                "held-out NLL",
                "true NLL",
                "W2",
                "W2 floor (data vs data)",
                "params",
                "train s",
                "sample ms",
                "final train loss (last 10%)",
                "max abs sample, per seed",
            ],
            rows,
        )
    )
    rows = []
    for ds in cfg["datasets"]:
        for lib in LIBRARIES:
            ex = res["datasets"][ds]["exactness"][lib]
            rows.append(
                [
                    ds,
                    lib,
                    str(ex["points"]),
                    f"{ex['max_abs_err_logp']:.1e}",
                    f"{ex['max_abs_logp']:.2f}",
                    f"{ex['max_abs_err_inverse']:.1e}",
                ]
            )
    parts += [
        "",
        "### Exactness: log p(x) vs brute-force change of variables (trained seed-0 flows, float64, "
        "held-out points)",
        "",
        *table(
            [
                "dataset",
                "library",
                "points",
                "max abs err of log p (vs log N(f(x)) + log|det jacobian|)",
                "max abs log p",
                "max abs err of f^-1(f(x)) - x",
            ],
            rows,
        ),
    ]
    return "\n".join(parts) + "\n"


def render(name: str, data: dict[str, Any], path: Path) -> list[str]:
    """The markdown of a result JSON: the run facts, then the tables."""
    return generic(name, data, path, tables, "total_seconds")


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--steps", type=int, default=None, help="training steps (default 6000)")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--layers", type=int, default=None, help="coupling layers (default 8)")
    p.add_argument("--hidden", type=int, default=None, help="conditioner width (default 128)")
    p.add_argument("--n-eval", type=int, default=None, help="held-out points and samples (default 2000)")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--quick", action="store_true", help="smoke run (< 1 min)")
    p.add_argument("--out", type=Path, default=None, help="JSON output (default results/flows[_quick].json)")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else DEFAULTS
    for key in ("steps", "seeds", "n_eval", "layers", "hidden"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    if args.out is None:
        args.out = Path(__file__).resolve().parent / "results" / f"flows{'_quick' if args.quick else ''}.json"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    env = machine(args.threads, DISTS)
    reference_seed = 99
    probe = {lib: FLOWS[lib](args.layers, args.hidden, 0) for lib in LIBRARIES}
    result: dict[str, Any] = {
        "benchmark": "flows",
        "config": {
            "steps": args.steps,
            "seeds": list(range(args.seeds)),
            "batch": args.batch,
            "lr": args.lr,
            "optimizer": "Adam (torch defaults otherwise), no clipping, no EMA, no warm-up",
            "objective": "-log p(x).mean() in nats per point, for both",
            "layers": args.layers,
            "hidden": args.hidden,
            "n_eval": args.n_eval,
            "datasets": list(args.datasets),
            "reference_seed": reference_seed,
            "quick": args.quick,
            "threads": args.threads,
        },
        "environment": env,
        "flows": {lib: f.how for lib, f in probe.items()},
        "params": {lib: n_params(f) for lib, f in probe.items()},
        "datasets": {},
    }
    for ds in args.datasets:
        data = make_toy(ds)
        reference = data.sample(args.n_eval, torch.Generator().manual_seed(reference_seed)).float()
        g_floor = torch.Generator().manual_seed(reference_seed + 1)
        entry: dict[str, Any] = {
            "true_nll": float(-data.log_prob(reference.double()).mean())
            if hasattr(data, "log_prob")
            else None,
            "floor_w2": wasserstein2(data.sample(args.n_eval, g_floor), reference),
            "runs": {lib: [] for lib in LIBRARIES},
            "exactness": {},
        }
        for seed in range(args.seeds):
            for lib in LIBRARIES:
                flow = FLOWS[lib](args.layers, args.hidden, seed)
                r = {"seed": seed, **train(flow, data, args.steps, args.batch, args.lr, 1000 + seed)}
                r.update(evaluate(flow, reference, args.n_eval, 2000 + seed))
                entry["runs"][lib].append(r)
                log(
                    f"[flows] {ds:<10} {lib:<6} seed {seed}: NLL {r['nll']:.4f}  W2 {r['w2']:.4f}  "
                    f"train {r['train_s']:.1f}s ({r['steps_per_s']:.0f} steps/s)"
                )
                if seed == 0:
                    entry["exactness"][lib] = exactness(flow, reference[:EXACT_POINTS])
        result["datasets"][ds] = entry
    env["loadavg_end"] = list(os.getloadavg())
    result["total_seconds"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(write(render, args.out, result))
    log(f"[flows] wrote {args.out} in {result['total_seconds'] / 60:.1f} min")
    return result


if __name__ == "__main__":
    main()
