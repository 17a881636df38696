"""Write ``benchmarks/RESULTS.md`` from the result JSONs in ``benchmarks/results/``.

RESULTS.md is generated, never edited by hand: every number and every run fact on it (hardware,
torch version, genlab commit, batch size, training steps, seeds, NFE, the regenerating command)
is read from a JSON that a benchmark script wrote. A fact a JSON does not hold is written
"not recorded"; a JSON that does not exist yields one line "not run yet: <command>". Quick
(smoke) runs are skipped: ``*_quick.json`` and any file whose ``quick`` flag is true.

    python benchmarks/results_md.py            # (re)write benchmarks/RESULTS.md
    python benchmarks/results_md.py --check    # exit 1 if the file on disk is stale

This file only assembles the page. Each section is drawn by the ``render(name, data, path)`` of
the benchmark script that wrote the JSON (the same function writes the script's own ``.md``),
picked by the JSON's ``"benchmark"`` key, else (older JSONs) by the file's entry in SECTIONS or
by :func:`detect`; ``genlab compare`` results are drawn by ``_compare.py``. A result file of no
known benchmark gets the generic section of ``_render.py``: the run facts it can find, then the
markdown the script wrote, from the JSON's ``"markdown"`` key or the sibling ``.md``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the benchmark scripts and _render.py, when this file is loaded by path
    sys.path.insert(0, str(HERE))

from _render import NR, Json, Renderer, generic  # noqa: E402

RESULTS_DIR = HERE / "results"
OUT = HERE / "RESULTS.md"
REGENERATE = "python benchmarks/results_md.py"

#: the benchmark scripts; a JSON's "benchmark" key names one, whose render() draws its section
SCRIPTS = (
    "toy2d",
    "ahead",
    "fewstep",
    "adjoint",
    "schedulers",
    "flows",
    "families",
    "likelihood",
    "diffusion",
    "couplings",
    "guidance",
    "scaling",
    "gpu",
)
#: benchmark -> the module in benchmarks/ that holds its render()
RENDERERS = {**{name: name for name in SCRIPTS}, "compare": "_compare"}


def renderer(benchmark: str | None) -> Renderer:
    """The ``render`` of a benchmark's script (imported on first use), else the generic one."""
    module = RENDERERS.get(benchmark or "")
    return generic if module is None else importlib.import_module(module).render


def is_quick(data: Json) -> bool:
    """True for a smoke run: a true ``quick`` flag at the top or one level down."""
    if data.get("quick") is True:
        return True
    return any(isinstance(v, dict) and v.get("quick") is True for v in data.values())


# --------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------

# (file, subsection title, benchmark whose render() draws it, command for "not run yet")
Entry = tuple[str, str, str, str]
SECTIONS: list[tuple[str, str, list[Entry]]] = [
    (
        "Peers",
        "genlab against other libraries on the same task, network, budget and metrics.",
        [
            (
                "toy2d.json",
                "Flow matching on 2D toys: genlab vs TorchCFM vs Meta flow_matching",
                "toy2d",
                "python benchmarks/toy2d.py",
            ),
            (
                "schedulers.json",
                "Diffusion schedulers: genlab DDPM/DDIM vs diffusers",
                "schedulers",
                "python benchmarks/schedulers.py",
            ),
            ("flows.json", "Coupling flows: genlab RealNVP vs zuko", "flows", "python benchmarks/flows.py"),
            (
                "ahead.json",
                "Ahead of the peers: throughput, adaptive ODE cost, likelihood, memory (issue 19)",
                "ahead",
                "python benchmarks/ahead.py",
            ),
            (
                "fewstep.json",
                "Few-step and one-step sampling: W2 at 1, 2 and 4 NFE (issue 19, goal 5)",
                "fewstep",
                "python benchmarks/fewstep.py",
            ),
        ],
    ),
    (
        "Families at equal budget",
        "genlab's model families against each other, trained through the public API.",
        [
            (
                "families.json",
                "Every family at a fixed CPU training budget",
                "families",
                "OMP_NUM_THREADS=1 python benchmarks/families.py --threads 1",
            ),
            (
                "compare_moons.json",
                "`genlab compare` on moons: every 2D family, 30 s of training each (issue 20)",
                "compare",
                "genlab compare moons moons_ot moons_meanflow moons_diffusion moons_ddpm moons_cnf "
                "moons_realnvp moons_vae moons_gan moons_wgan_gp --budget 30s --seeds 3 --threads 1",
            ),
            (
                "compare_digits120.json",
                "`genlab compare` on digits: every image family, 120 s of training each (issue 20)",
                "compare",
                "genlab compare digits digits_diffusion digits_ddpm digits_vae digits_vqvae digits_gan "
                "digits_stylegan --budget 120s --seeds 3 --threads 1 --metrics fd --n 359",
            ),
            (
                "compare_digits_320steps.json",
                "`genlab compare` on digits at 320 steps (what 45 s gave): the diffusion families against "
                "flow matching (issue 20)",
                "compare",
                "genlab compare digits digits_diffusion digits_ddpm --budget 320steps --seeds 2 --threads 1 "
                "--metrics fd",
            ),
            (
                "compare_digits.json",
                "`genlab compare` on digits, 45 s of training each (the defaults before issue 20)",
                "compare",
                "genlab compare digits digits_diffusion digits_vae digits_vqvae digits_gan "
                "--budget 45s --seeds 2 --threads 1 --metrics fd,w2",
            ),
            (
                "compare_digits16.json",
                "`genlab compare` on the digits upsampled to 16x16 (`data.resize=16`), 30 s of training each",
                "compare",
                "genlab compare digits digits_diffusion digits_vae digits_vqvae digits_gan digits_stylegan "
                "data.resize=16 --budget 30s --seeds 1 --metrics w2 --threads 2 --n 359",
            ),
        ],
    ),
    (
        "Likelihoods",
        "",
        [
            (
                "likelihood.json",
                "NLL, log-prob throughput, bits/dim",
                "likelihood",
                "python benchmarks/likelihood.py --digits",
            )
        ],
    ),
    (
        "Diffusion samplers",
        "",
        [
            (
                "diffusion.json",
                "Quality against NFE",
                "diffusion",
                "python benchmarks/diffusion.py --digits",
            )
        ],
    ),
    (
        "Couplings",
        "",
        [
            (
                "couplings.json",
                "OT cost per step and W2 against NFE",
                "couplings",
                "python benchmarks/couplings.py --seeds 3",
            ),
            (
                "couplings_cost.json",
                "Cost per training step (part 1 alone)",
                "couplings",
                "python benchmarks/couplings.py --part cost",
            ),
        ],
    ),
    (
        "Guidance",
        "",
        [
            (
                "guidance.json",
                "Classifier-free guidance and data couplings on digits",
                "guidance",
                "python benchmarks/guidance.py --couplings",
            )
        ],
    ),
    (
        "Scaling",
        "",
        [
            (
                "scaling.json",
                "Data-parallel training throughput (DDP)",
                "scaling",
                "python benchmarks/scaling.py",
            )
        ],
    ),
    (
        "Devices",
        "Every family on a GPU, mixed precision and torch.compile.",
        [
            (
                "gpu.json",
                "Every family on one GPU, and the trainer's throughput",
                "gpu",
                "python benchmarks/gpu.py",
            ),
            (
                "compile_cpu.json",
                "torch.compile and bf16 on the CPU",
                "gpu",
                "python benchmarks/gpu.py --device cpu --sections throughput --nets digits,mlp "
                "--modes fp32,fp32+compile,bf16,bf16+compile --out benchmarks/results/compile_cpu.json",
            ),
        ],
    ),
]


def detect(data: Json) -> str | None:
    """The benchmark of an older result file (no ``"benchmark"`` key) whose name is not in SECTIONS
    (e.g. a run with ``--out``)."""
    if "library_status" in data and "datasets" in data:
        return "toy2d"
    if "tables" in data and "budget_s" in data:
        return "families"
    if isinstance(data.get("config"), dict) and ("cost" in data or "nfe" in data):
        return "couplings"
    if "rows" in data and "budget" in data and "settings" in data:
        return "compare"
    if "throughput" in data and "device_name" in data:
        return "gpu"
    return None


def load(path: Path) -> Json | None:
    """The JSON of a full (non-quick) run, else None."""
    if not path.exists() or path.stem.endswith("_quick"):
        return None
    data = json.loads(path.read_text())
    return None if not isinstance(data, dict) or is_quick(data) else data


def render(results_dir: Path) -> str:
    lines = [
        "# genlab benchmark results",
        "",
        "How genlab compares with its peers and how its model families compare with each other. "
        "This page is generated: every number and every run fact below (hardware, torch, commit, batch, "
        f'steps, seeds, NFE, command) is read from the named JSON in `results/`; "{NR}" means the JSON '
        "does not hold that fact. Quick (smoke) runs are not shown. Do not edit this file; "
        "regenerate it with",
        "",
        "```bash",
        REGENERATE,
        "```",
        "",
        "and check it is in sync with `"
        + REGENERATE
        + " --check`. What each benchmark holds fixed and how to "
        "read its columns is in [README.md](README.md).",
    ]
    claimed = set()
    for title, intro, entries in SECTIONS:
        lines += ["", f"## {title}", ""]
        if intro:
            lines += [intro, ""]
        for file, subtitle, benchmark, missing in entries:
            claimed.add(file)
            path = results_dir / file
            data = load(path)
            lines += [f"### {subtitle}", ""]
            if data is None:
                lines += [f"not run yet: `{missing}`", ""]
                continue
            lines += [*renderer(data.get("benchmark") or benchmark)(file, data, path), ""]
    others = []
    for path in sorted(results_dir.glob("*.json")):
        data = load(path)
        if path.name in claimed or data is None:
            continue
        draw = renderer(data.get("benchmark") or detect(data))
        others += [f"### {path.name}", "", *draw(path.name, data, path), ""]
    if others:
        lines += [
            "",
            "## Other recorded runs",
            "",
            "Full runs written under other names (e.g. with `--out`).",
            "",
        ]
        lines += others
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the result JSONs are")
    p.add_argument("--out", type=Path, default=OUT, help="the page to write (default benchmarks/RESULTS.md)")
    p.add_argument("--check", action="store_true", help="exit 1 if --out differs from what would be written")
    args = p.parse_args(argv)
    text = render(args.results_dir)
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is out of date: run `{REGENERATE}`", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
