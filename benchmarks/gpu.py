"""genlab on a GPU: every family trains, samples and scores on the device, and how fast.

One script, sized to finish in under 8 minutes on one GPU (an H200 here):

(a) **families**: every family's packaged config trains for 200 steps on the device in fp32
    and in bf16 (and ``digits`` also in fp16, with its GradScaler), with one in-training
    evaluation at the end (what keeps a GAN's best checkpoint), then samples and is scored
    on the device by the code behind ``genlab eval`` (the family's default metrics; W2 needs
    POT and is left out, with a note, where POT is missing); one run trained on the device
    resumes on the CPU for 10 more steps and is scored there (checkpoints are device-free);
(b) **throughput**: training samples/s of genlab's trainer, as a user runs it, for the
    digits U-Net (batch 128), a CIFAR-10-sized U-Net (3x32x32, 128 base channels, channel
    multipliers 1-2-2-2, 2 residual blocks, attention at the lowest resolution, dropout
    0.1: the size of TorchCFM's CIFAR-10 recipe; random images stand in for CIFAR-10,
    which is not on the machine) and the 2D MLP (4 x 256, SiLU) at batch 256 and 4096,
    each in fp32, bf16 and bf16 + ``train.compile`` (``--modes`` adds fp32 + compile), and
    the U-Nets in bf16 with the images held on the device instead of moved per batch;
    the rate is the median of the logging windows after the first (the first holds
    compilation and warm-up), and the compile time is the first window's extra time, with
    a cold inductor cache;
(c) writes ``benchmarks/results/gpu.json`` and ``gpu.md`` (``--quick``: ``gpu_quick.*``).

    python benchmarks/gpu.py                          # on a CUDA machine
    python benchmarks/gpu.py --device cpu --quick     # tiny sizes: the check CI runs

It needs torch, numpy, scipy, safetensors, tqdm, pyyaml and matplotlib (what a GPU machine
usually holds); genlab itself is imported from ``src/`` when it is not installed.
A failure of one run is recorded in its row and the others go on; the exit status is 1
when any row failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("genlab") is None:  # a bare GPU machine: use the checkout
    sys.path.insert(0, str(HERE.parent / "src"))

import torch  # noqa: E402
from _env import machine  # noqa: E402
from _render import facts, full_tables, write  # noqa: E402

from genlab.app import evaluation, runs  # noqa: E402
from genlab.app.builders import build_model  # noqa: E402
from genlab.app.compare import metrics_for  # noqa: E402
from genlab.app.config import build_config  # noqa: E402
from genlab.app.train import train  # noqa: E402
from genlab.data.images import ImageDataset  # noqa: E402
from genlab.data.toy2d import make_toy  # noqa: E402
from genlab.devices import resolve_device  # noqa: E402
from genlab.training.trainer import Trainer  # noqa: E402

RESULTS = HERE / "results"
#: one packaged config per family and per kind of model within it
FAMILY_CONFIGS = (
    "moons",
    "moons_ot",
    "moons_diffusion",
    "moons_ddpm",
    "moons_cnf",
    "moons_meanflow",
    "moons_realnvp",
    "moons_vae",
    "moons_gan",
    "moons_wgan_gp",
    "circles_to_moons_cyclegan",
    "digits",
    "digits_cond",
    "digits_inpaint",
    "digits_diffusion",
    "digits_ddpm",
    "digits_vae",
    "digits_vqvae",
    "digits_gan",
    "digits_cgan",
    "digits_stylegan",
    "digits_pix2pix",
    "digits_cyclegan",
)
#: configs that need POT to train (minibatch OT couplings)
NEEDS_POT = ("moons_ot",)
#: the config also trained in fp16, and the one resumed on the CPU
FP16_CONFIG, RESUME_CONFIG = "digits", "moons"
#: overrides that shrink every config for --quick (the CI check)
QUICK = [
    "model.net.width=16",
    "model.net.depth=2",
    "model.net.base_channels=8",
    "model.flow_hidden=16",
    "model.cnf_steps=2",
    "model.ae.prior_args={steps: 10, hidden: 8, layers: 2}",
    "sample.steps=4",
]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _metric_names(cfg: Any, have_pot: bool) -> list[str]:
    names = metrics_for(cfg, None)
    return [m for m in names if have_pot or m != "w2"]


def _family_run(
    name: str, precision: str, device: str, steps: int, n: int, quick: bool, root: Path, have_pot: bool
) -> dict[str, Any]:
    """Train one packaged config on ``device`` in ``precision``, then sample and score it there."""
    over = [
        f"train.steps={steps}",
        f"train.device={device}",
        f"train.precision={precision}",
        f"train.log_every={max(1, steps // 4)}",
        f"train.ckpt_every={steps}",
        f"train.eval_every={steps}",  # the in-training evaluation (best checkpoint) on the device too
        f"train.eval_n={n}",
        *(QUICK if quick else []),
    ]
    row: dict[str, Any] = {"config": name, "precision": precision, "steps": steps}
    t0 = time.perf_counter()
    try:
        cfg = runs.resolve_config(name, over, shared=True)
        row["family"] = cfg.model.family
        res = train(cfg, root / f"{name}_{precision}", progress=False)
        row.update(steps_per_s=res.steps_per_s, final_loss=res.final_loss, trained_on=res.device)
        metrics = _metric_names(cfg, have_pot)
        ev = evaluation.evaluate(res.run_dir, n=n, metrics=metrics, device=device)
        row.update(
            sampler=ev["sampler"],
            nfe=ev["nfe"],
            sample_s=ev["sample_s"],
            sampled_on=ev["device"],
            metrics={k: v["value"] for k, v in ev["metrics"].items()},
            floors={k: v["floor"] for k, v in ev["metrics"].items()},
        )
        if not have_pot and "w2" in metrics_for(cfg, None):
            row["note"] = "w2 left out: POT is not installed"
        row["status"] = "ok"
    except Exception as err:  # noqa: BLE001 - record and go on with the other runs
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        row.update(status="failed", error=f"{type(err).__name__}: {first[:300]}")
    row["wall_s"] = time.perf_counter() - t0
    return row


def families(device: str, quick: bool, root: Path, have_pot: bool) -> dict[str, Any]:
    steps, n = (3, 32) if quick else (200, 500)
    rows = []
    for name in FAMILY_CONFIGS:
        if name in NEEDS_POT and not have_pot:
            rows.append({"config": name, "status": "skipped", "note": "needs POT (pip install pot)"})
            continue
        precisions = ["fp32", "bf16"] + (["fp16"] if name == FP16_CONFIG else [])
        for precision in precisions:
            row = _family_run(name, precision, device, steps, n, quick, root, have_pot)
            _log(f"  {name:28s} {precision}: {row['status']} ({row['wall_s']:.1f} s)")
            rows.append(row)
    return {"steps": steps, "n": n, "rows": rows, "resume": _resume_on_cpu(root, steps, n, have_pot)}


def _resume_on_cpu(root: Path, steps: int, n: int, have_pot: bool) -> dict[str, Any]:
    """The fp32 run of RESUME_CONFIG, trained on the device, resumes on the CPU for 10 steps
    and is scored there."""
    run_dir = root / f"{RESUME_CONFIG}_fp32"
    out: dict[str, Any] = {"config": RESUME_CONFIG, "from_steps": steps, "to_steps": steps + 10}
    try:
        cfg = runs.load_run(run_dir, device="cpu").cfg
        out["trained_on"] = cfg.train.device
        tree = cfg.to_dict()
        tree["train"].update(steps=steps + 10, device="cpu")
        res = train(build_config(tree), run_dir, resume=True, progress=False)
        ev = evaluation.evaluate(run_dir, n=n, metrics=_metric_names(cfg, have_pot), device="cpu")
        out.update(status="ok", step=res.step, resumed_on=res.device, metrics=ev["metrics"])
    except Exception as err:  # noqa: BLE001
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        out.update(status="failed", error=f"{type(err).__name__}: {first[:300]}")
    return out


# -- throughput -----------------------------------------------------------------------------
def _nets(quick: bool) -> list[dict[str, Any]]:
    """(name, config overrides, data shape, batch sizes, steps) of the measured networks."""
    if quick:
        unet = ["model.net.kind=unet", "model.net.base_channels=8"]
        return [
            {
                "key": "digits",
                "name": "digits U-Net",
                "shape": (1, 8, 8),
                "over": unet,
                "batches": [8],
                "steps": 6,
            },
            {
                "key": "mlp",
                "name": "2D MLP",
                "shape": (2,),
                "over": ["model.net.width=16"],
                "batches": [16],
                "steps": 6,
            },
        ]
    cifar = [
        "model.net.kind=unet",
        "model.net.base_channels=128",
        "model.net.channel_mults=[1,2,2,2]",
        "model.net.num_res_blocks=2",
        "model.net.attention=true",
        "model.net.dropout=0.1",
    ]
    digits = ["model.net.kind=unet", "model.net.base_channels=32", "model.net.channel_mults=[1,2]"]
    return [
        {
            "key": "digits",
            "name": "digits U-Net",
            "shape": (1, 8, 8),
            "over": digits,
            "batches": [128],
            "steps": 300,
        },
        {
            "key": "cifar",
            "name": "CIFAR-10 U-Net (128 ch)",
            "shape": (3, 32, 32),
            "over": cifar,
            "batches": [128],
            "steps": 80,
        },
        {
            "key": "mlp",
            "name": "2D MLP (4 x 256)",
            "shape": (2,),
            "over": [],
            "batches": [256, 4096],
            "steps": 600,
        },
    ]


#: training precision, with or without train.compile; +devdata: the images held on the device
#: (the default draws each batch on the CPU and moves it)
DEFAULT_MODES = ("fp32", "bf16", "bf16+compile", "bf16+devdata")
MODES = ("fp32", "fp32+compile", "bf16", "bf16+compile", "bf16+devdata")


def _throughput_point(net: dict[str, Any], batch: int, mode: str, device: str, root: Path) -> dict[str, Any]:
    precision = mode.split("+")[0]
    steps = net["steps"]
    windows = 6
    over = [
        *net["over"],
        f"train.steps={steps}",
        f"train.batch_size={batch}",
        f"train.precision={precision}",
        f"train.compile={'true' if '+compile' in mode else 'false'}",
        f"train.log_every={max(1, steps // windows)}",
        f"train.ckpt_every={steps + 1}",
        "train.warmup_steps=0",
    ]
    point: dict[str, Any] = {"net": net["name"], "batch": batch, "mode": mode}
    try:
        cfg = build_config({}, over)
        model = build_model(cfg, net["shape"])
        point["params"] = sum(p.numel() for p in model.parameters())
        gen = torch.Generator().manual_seed(0)
        if len(net["shape"]) == 3:  # images in memory, as the image data sets are held
            images = torch.rand(2048, *net["shape"], generator=gen) * 2 - 1
            if "+devdata" in mode:  # held on the device: each batch is gathered there
                images = images.to(device)
            data: Any = ImageDataset(images, torch.zeros(2048, dtype=torch.long), 1, "random")
        else:
            data = make_toy("moons")
        run_dir = root / f"tp_{len(list(root.iterdir()))}"
        trainer = Trainer(
            model, data.sample, cfg.train, run_dir, cfg.to_dict(), progress=False, device=device
        )
        t0 = time.perf_counter()
        trainer.fit()
        wall = time.perf_counter() - t0
        records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        rates = [r["steps_per_s"] for r in records if "steps_per_s" in r]
        rate = statistics.median(rates[1:]) if len(rates) > 1 else rates[0]
        per_window = max(1, steps // windows)
        first_extra = per_window / rates[0] - per_window / rate  # compilation and warm-up
        point.update(
            status="ok",
            steps=steps,
            steps_per_s=rate,
            samples_per_s=rate * batch,
            first_window_extra_s=first_extra,
            wall_s=wall,
            compiled="+compile" in mode,
        )
    except Exception as err:  # noqa: BLE001
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        point.update(status="failed", error=f"{type(err).__name__}: {first[:300]}")
    return point


def throughput(
    device: str, quick: bool, root: Path, nets: list[str] | None = None, modes: list[str] | None = None
) -> list[dict[str, Any]]:
    points = []
    for net in _nets(quick):
        if nets and net["key"] not in nets:
            continue
        for batch in net["batches"]:
            todo = list(modes or DEFAULT_MODES)
            if net["key"] == "mlp":  # 2D toy points are generated each step: no data set to hold
                todo = [m for m in todo if "+devdata" not in m]
            elif quick:
                todo = [m for m in todo if "+compile" not in m]  # one compile keeps CI short
            for mode in todo:
                p = _throughput_point(net, batch, mode, device, root)
                rate = f"{p['samples_per_s']:.0f} samples/s" if p["status"] == "ok" else p["error"]
                _log(f"  {net['name']:26s} batch {batch:5d} {mode:13s}: {rate}")
                points.append(p)
    return points


# -- report ---------------------------------------------------------------------------------
def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _family_lines(fam: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"{fam['steps']} training steps per run, {fam['n']} samples scored.",
        "",
        "| config | family | precision | status | steps/s | final loss | sampler (NFE) | sample s "
        "| metrics (floor) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in fam["rows"]:
        if r["status"] != "ok":
            why = r.get("error") or r.get("note", "")
            lines.append(
                f"| {r['config']} | {r.get('family', '-')} | {r.get('precision', '-')} | "
                f"{r['status']}: {why} | | | | | |"
            )
            continue
        metrics = ", ".join(f"{k} {_fmt(v)} ({_fmt(r['floors'].get(k))})" for k, v in r["metrics"].items())
        lines.append(
            f"| {r['config']} | {r['family']} | {r['precision']} | ok | {r['steps_per_s']:.0f} | "
            f"{_fmt(r['final_loss'])} | {r['sampler']} ({r['nfe']}) | {r['sample_s']:.2f} | {metrics} |"
        )
    res = fam["resume"]
    lines += [
        "",
        f"Resume on the CPU: {res['config']} trained on {res.get('trained_on', '?')} "
        f"for {res['from_steps']} steps, resumed on {res.get('resumed_on', '?')} "
        f"to step {res.get('step', '?')}: {res['status']}"
        + (f" ({res['error']})" if res.get("error") else ""),
    ]
    return lines


def _throughput_lines(points: list[dict[str, Any]]) -> list[str]:
    present = [m for m in MODES if any(p["mode"] == m for p in points)]
    compiled = [m for m in present if "+compile" in m]
    head = " | ".join(
        f"{m.replace('+devdata', ', data on device').replace('+', ' + ')} samples/s" for m in present
    )
    head += "".join(f" | {m.replace('+', ' + ')}: compile s" for m in compiled)
    lines = [
        "",
        f"| network | params | batch | {head} |",
        "|---|---|---|" + "---|" * (len(present) + len(compiled)),
    ]
    by_key: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for p in points:
        by_key.setdefault((p["net"], p["batch"]), {})[p["mode"]] = p

    def rate(modes: dict[str, dict[str, Any]], mode: str) -> str:
        p = modes.get(mode)
        if p is None:
            return "-"
        return f"{p['samples_per_s']:.0f}" if p["status"] == "ok" else "failed"

    def compile_s(modes: dict[str, dict[str, Any]], mode: str) -> str:
        p = modes.get(mode)
        return _fmt(p.get("first_window_extra_s")) if p and p["status"] == "ok" else "-"

    for (net, batch), modes in by_key.items():
        params = next((f"{p['params']:,}" for p in modes.values() if p.get("params")), "-")
        cells = [rate(modes, m) for m in present] + [compile_s(modes, m) for m in compiled]
        lines.append(f"| {net} | {params} | {batch} | " + " | ".join(cells) + " |")
    return lines


def tables(result: dict[str, Any]) -> str:
    """The families table, the resume line and the throughput table (sections that ran)."""
    lines = [
        f"Device: {result['device_name']} ({result['device']}); torch {result['torch']}; "
        f"total {result['wall_s']:.0f} s; regenerate with `{result['command']}`."
    ]
    if "families" in result:
        lines += _family_lines(result["families"])
    if "throughput" in result:
        lines += _throughput_lines(result["throughput"])
    return "\n".join(lines) + "\n"


def render(name: str, data: dict[str, Any], path: Path) -> list[str]:
    """The markdown of a result JSON (gpu.json, or a CPU run such as compile_cpu.json): run facts,
    then the tables."""
    fam = data.get("families") or {}
    batches = sorted({str(p.get("batch")) for p in data.get("throughput", []) if p.get("batch")})
    out = facts(
        name,
        data,
        batch="/".join(batches) if batches else None,
        training=f"{fam['steps']} per family run" if fam.get("steps") else None,
        command=data.get("command"),
    )
    md = full_tables(name, data, path, tables, "wall_s")
    if md:
        out += ["", md[1].strip()]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, cpu, mps or auto")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (the CI check)")
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/results/gpu[_quick].json)")
    ap.add_argument("--sections", default="families,throughput", help="comma-separated subset")
    ap.add_argument("--nets", default=None, help="throughput: comma-separated subset of digits,cifar,mlp")
    ap.add_argument(
        "--modes",
        default=",".join(DEFAULT_MODES),
        help=f"throughput: comma-separated subset of {','.join(MODES)}",
    )
    args = ap.parse_args(argv)
    device = str(resolve_device(args.device, "--device"))
    out = Path(args.out) if args.out else RESULTS / ("gpu_quick.json" if args.quick else "gpu.json")
    have_pot = importlib.util.find_spec("ot") is not None
    sections = [s for s in args.sections.split(",") if s]
    t0 = time.perf_counter()
    dev = torch.device(device)
    result: dict[str, Any] = {
        "benchmark": "gpu",
        "command": "python benchmarks/gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": device,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type,
        "torch": torch.__version__,
        "pot": have_pot,
        "machine": machine(torch.get_num_threads(), ("numpy", "scipy", "safetensors")),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if "families" in sections:
            _log("families: every packaged config on the device")
            result["families"] = families(device, args.quick, root, have_pot)
        if "throughput" in sections:
            _log("throughput: samples/s of the trainer")
            (root / "tp").mkdir()
            nets = [n for n in args.nets.split(",") if n] if args.nets else None
            modes = [m for m in args.modes.split(",") if m]
            bad = sorted(set(modes) - set(MODES))
            if bad:
                ap.error(f"--modes: {bad[0]} is not one of {', '.join(MODES)}")
            # a cold compilation cache, so the compile time is what a first run pays
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root / "inductor")
            result["throughput"] = throughput(device, args.quick, root / "tp", nets, modes)
    result["wall_s"] = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(write(render, out, result), end="")
    fam = result.get("families", {"rows": [], "resume": {}})
    rows = [*fam["rows"], fam["resume"], *result.get("throughput", [])]
    failed = [r for r in rows if r.get("status") == "failed"]
    _log(f"wrote {out} and {out.with_suffix('.md')} in {result['wall_s']:.0f} s; {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
