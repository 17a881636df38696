"""Training worker of benchmarks/toy2d.py: one library, one data set, one fresh process.

Run by toy2d.py as ``python toy2d_worker.py JOB.json OUT_DIR``; it writes ``result.json``
(timings, memory, losses) and ``weights.npz`` (the trained state dict) into OUT_DIR. A
separate script, rather than multiprocessing, keeps the process lean: it imports torch,
genlab's networks / data / models and the one library under test, nothing of the
evaluation side (POT, scipy, matplotlib), so "RSS at loop start" is the footprint of the
library and the model, and the loop's memory and speed are not affected by earlier runs.

The network, the seeds and the three training steps are defined here once and imported by
toy2d.py (for its objective check).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.data import make_toy
from genlab.models import FlowMatching
from genlab.networks import MLPConfig, TimeMLP
from genlab.paths import T_END_GAP

NET_CONFIG = MLPConfig(dim=2, width=256, depth=4, activation="silu")
LOSS_TAIL = 0.1  # "final loss" = mean training loss over this last fraction of steps

# --------------------------------------------------------------------------------------
# seeds: one place derives every stream from --seed
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeds:
    """All random streams of one data set, derived from the master seed."""

    init: int  # network initialisation (identical for every library)
    data: int  # training batches (identical for every library)
    noise: int  # x_0 and t during training (genlab's generator; global RNG of the peers)
    reference: int  # fresh evaluation data
    source: int  # x_0 of every evaluation sample (identical for every library and solver)
    floor: int  # the two true-data draws of the metric floor

    @classmethod
    def derive(cls, seed: int, dataset_index: int) -> Seeds:
        base = seed * 1000 + dataset_index * 10
        return cls(seed, base + 1, base + 2, base + 3, base + 4, base + 5)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build_net(init_seed: int) -> TimeMLP:
    """The one network every library trains; init from the global RNG seeded here."""
    torch.manual_seed(init_seed)
    return TimeMLP(NET_CONFIG)


def param_digest(net: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in net.state_dict().items():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------
# one training step per library: x1 (B, 2) -> scalar loss
# --------------------------------------------------------------------------------------

LossFn = Callable[[torch.Tensor], torch.Tensor]


def shared_noise(x1: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """genlab's draws in genlab's order: x_0 ~ N(0, I) (B, 2), then t ~ U[0, 1 - gap) (B,)."""
    x0 = torch.randn(x1.shape, generator=g, dtype=x1.dtype)  # (B, 2)
    t = (1.0 - T_END_GAP) * torch.rand(x1.shape[0], generator=g, dtype=x1.dtype)  # (B,)
    return x0, t


def genlab_loss(net: torch.nn.Module, g: torch.Generator, shared: bool) -> LossFn:
    model = FlowMatching(net, (2,))

    def loss(x1: torch.Tensor) -> torch.Tensor:
        return model.loss(x1, g)["loss"]

    return loss


def torchcfm_loss(net: torch.nn.Module, g: torch.Generator, shared: bool) -> LossFn:
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher

    matcher = ConditionalFlowMatcher(sigma=0.0)

    def loss(x1: torch.Tensor) -> torch.Tensor:
        if shared:
            x0, t = shared_noise(x1, g)
            t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1, t=t)
        else:  # TorchCFM's README loop: t drawn inside, from the global RNG
            x0 = torch.randn_like(x1)
            t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        vt = net(xt, t)  # (B, 2)
        return torch.mean((vt - ut) ** 2)

    return loss


def flow_matching_loss(net: torch.nn.Module, g: torch.Generator, shared: bool) -> LossFn:
    from flow_matching.path import AffineProbPath
    from flow_matching.path.scheduler import CondOTScheduler

    path = AffineProbPath(scheduler=CondOTScheduler())

    def loss(x1: torch.Tensor) -> torch.Tensor:
        if shared:
            x0, t = shared_noise(x1, g)
        else:  # flow_matching's 2D example loop
            x0 = torch.randn_like(x1)
            t = torch.rand(x1.shape[0]).type_as(x1)
        ps = path.sample(t=t, x_0=x0, x_1=x1)
        return torch.pow(net(ps.x_t, ps.t) - ps.dx_t, 2).mean()

    return loss


LOSS_BUILDERS: dict[str, Callable[[torch.nn.Module, torch.Generator, bool], LossFn]] = {
    "genlab": genlab_loss,
    "torchcfm": torchcfm_loss,
    "flow_matching": flow_matching_loss,
}


# --------------------------------------------------------------------------------------
# training (runs in a fresh worker process)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainJob:
    library: str
    dataset: str
    steps: int
    batch: int
    lr: float
    seeds: Seeds
    shared_noise: bool
    threads: int | None = None  # torch.set_num_threads; None leaves torch's default


def _status_kib(field: str) -> float | None:
    """A ``kB`` field of /proc/self/status (Linux), or None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """High-water mark of this process's resident set, in MiB.

    VmHWM from /proc/self/status where available. ``getrusage(RUSAGE_SELF).ru_maxrss`` is
    the fallback only: it is max(VmHWM, the RSS the process had *before exec*), and a
    process forked from a large parent (toy2d.py holds ~350 MiB) inherits that parent's
    RSS as a floor that no reset clears.
    """
    hwm = _status_kib("VmHWM")
    if hwm is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return hwm / 1024.0


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0).

    Writing 5 to /proc/self/clear_refs resets VmHWM, so ``peak_rss_mib()`` right after it
    is the current RSS and the later peak is the loop's own. Returns False where that is
    not possible; then the delta is a lower bound (the high-water mark may come from an
    import-time transient).
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def train(job: TrainJob) -> dict[str, Any]:
    """Train one library on one data set; time and measure only the loop."""
    if job.threads is not None:
        torch.set_num_threads(job.threads)
    net = build_net(job.seeds.init)
    init_digest = param_digest(net)
    noise = generator(job.seeds.noise)
    torch.manual_seed(job.seeds.noise)  # the peers draw x_0 and t from the global RNG
    loss_fn = LOSS_BUILDERS[job.library](net, noise, job.shared_noise)
    data = make_toy(job.dataset)
    data_gen = generator(job.seeds.data)
    opt = torch.optim.Adam(net.parameters(), lr=job.lr)
    losses = torch.empty(job.steps)
    net.train()

    peak_was_reset = reset_peak_rss()
    rss_start = peak_rss_mib()
    load_start = os.getloadavg()[0]
    stamps = np.empty(job.steps + 1)  # perf_counter after each step (one clock read)
    stamps[0] = start = time.perf_counter()
    for step in range(job.steps):
        x1 = data.sample(job.batch, data_gen)  # (B, 2)
        loss = loss_fn(x1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[step] = loss.detach()
        stamps[step + 1] = time.perf_counter()
    end = stamps[-1]
    rss_peak = peak_rss_mib()
    load_end = os.getloadavg()[0]

    seconds = end - start
    tail = max(1, int(LOSS_TAIL * job.steps))
    step_ms = 1e3 * np.diff(stamps)  # (steps,)
    return {
        "library": job.library,
        "dataset": job.dataset,
        "init_digest": init_digest,
        "torch_threads": torch.get_num_threads(),
        "train_seconds": seconds,
        "steps_per_s": job.steps / seconds,
        "ms_per_step": 1e3 * seconds / job.steps,
        "median_ms_per_step": float(np.median(step_ms)),
        "p90_ms_per_step": float(np.percentile(step_ms, 90)),
        "first_step_ms": float(step_ms[0]),
        "rss_loop_start_mib": rss_start,
        "rss_peak_mib": rss_peak,
        "rss_peak_delta_mib": rss_peak - rss_start,
        "rss_peak_was_reset": peak_was_reset,
        "loadavg_1min_start_end": [load_start, load_end],
        "loss_first": float(losses[0]),
        "loss_final": float(losses[-tail:].mean()),
        "state_dict": {k: v.detach().numpy().copy() for k, v in net.state_dict().items()},
    }


def load_net(state: dict[str, np.ndarray]) -> TimeMLP:
    net = TimeMLP(NET_CONFIG)
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return net.eval()


def main(job_path: str, out_dir: str) -> None:
    spec = json.loads(Path(job_path).read_text())
    job = TrainJob(**{**spec, "seeds": Seeds(**spec["seeds"])})
    result = train(job)
    state = result.pop("state_dict")
    out = Path(out_dir)
    np.savez(out / "weights.npz", **state)
    (out / "result.json").write_text(json.dumps(result) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: toy2d_worker.py JOB.json OUT_DIR")
    main(sys.argv[1], sys.argv[2])
