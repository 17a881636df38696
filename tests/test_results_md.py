"""benchmarks/results_md.py: RESULTS.md is in sync with the result JSONs, and renders what they hold."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rmd():
    spec = importlib.util.spec_from_file_location("results_md", ROOT / "benchmarks" / "results_md.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["results_md"] = module
    spec.loader.exec_module(module)
    return module


def section(text: str, title: str) -> str:
    """The text of the ``### title`` subsection."""
    start = text.index(f"### {title}")
    end = text.find("\n### ", start + 1)
    nxt = text.find("\n## ", start + 1)
    ends = [e for e in (end, nxt) if e != -1]
    return text[start : min(ends)] if ends else text[start:]


def row(text: str, first: str) -> str:
    """The table row whose first cell is ``first``."""
    return next(line for line in text.splitlines() if line.startswith(f"| {first} |"))


def test_results_md_in_sync(rmd):
    assert rmd.main(["--check"]) == 0, "benchmarks/RESULTS.md is stale: run python benchmarks/results_md.py"


def test_check_fails_on_stale_file(rmd, tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text("hand-edited\n")
    assert rmd.main(["--results-dir", str(tmp_path), "--out", str(out), "--check"]) == 1
    assert rmd.main(["--results-dir", str(tmp_path), "--out", str(out)]) == 0
    assert rmd.main(["--results-dir", str(tmp_path), "--out", str(out), "--check"]) == 0


def test_missing_json_yields_not_run_yet(rmd, tmp_path):
    # a quick run does not count as a run
    (tmp_path / "toy2d_quick.json").write_text(json.dumps({"config": {"quick": True}}))
    (tmp_path / "families.json").write_text(json.dumps({"quick": True, "tables": {}, "budget_s": {}}))
    text = rmd.render(tmp_path)
    assert "not run yet: `python benchmarks/toy2d.py`" in text
    assert "not run yet: `OMP_NUM_THREADS=1 python benchmarks/families.py --threads 1`" in text
    assert "not run yet: `python benchmarks/schedulers.py`" in text
    assert "not run yet: `python benchmarks/scaling.py`" in text
    assert "Other recorded runs" not in text


def write(tmp: Path, name: str, data: dict) -> None:
    (tmp / name).write_text(json.dumps(data))


def test_special_cased_renderers(rmd, tmp_path):
    machine = {
        "cpu_model": "Test CPU 9000",
        "cpu_count": 4,
        "torch": "9.9.9",
        "torch_threads": 3,
        "genlab_git": {"commit": "abcdef0123456789", "src_genlab_modified": False},
    }
    write(
        tmp_path,
        "toy2d.json",
        {
            "config": {"steps": 77, "batch": 64, "seed": 0, "libraries": ["genlab"], "datasets": ["moons"]},
            "environment": {"cpu_count": 2, "torch_threads": 2, "versions": {"torch": "2.13.0+cpu"}},
            "library_status": {"genlab": "ok"},
            "datasets": {
                "moons": {
                    "seeds": {"data": 1},
                    "train": {"genlab": {"median_ms_per_step": 4.25}},
                    "quality": {"genlab": {"euler-8": {"nfe": 8, "w2": 0.4321}}},
                    "floor": {"w2": 0.1111},
                }
            },
        },
    )
    write(
        tmp_path,
        "families.json",
        {
            "environment": machine,
            "budget_s": {"2d": 5.0},
            "seeds": {"2d": [0]},
            "argv": ["benchmarks/families.py", "--budget-2d", "5"],
            "tables": {
                "2D: moons": [
                    {
                        "family": "VAE",
                        "config": "moons_vae",
                        "steps": 321,
                        "metrics": ["w2"],
                        "summary": {
                            "nfe": 1,
                            "metrics": {"eval": {"w2": {"mean": 0.2468, "std": 0.01, "n": 2}}},
                        },
                    }
                ]
            },
        },
    )
    write(
        tmp_path,
        "likelihood.json",
        {
            "env": {"torch": "2.13.0+cpu", "threads": 2},
            "nll": {
                "rows": [{"model": "RealNVP", "train_steps": 6000, "nll": 1.8765, "gap": 0.19}],
                "n": 2000,
            },
        },
    )
    write(
        tmp_path,
        "diffusion.json",
        {
            "env": {"threads": 2},
            "settings": {"train_steps": 6000, "n_eval": 2000, "quick": False},
            "datasets": {
                "moons": {"rows": [{"sampler": "dpm", "nfe": 10, "w2": 0.2222}], "floor": {"w2": 0.14}}
            },
        },
    )
    write(
        tmp_path,
        "couplings.json",
        {
            "config": {"part": "all", "seed": 0, "seeds": 2, "batch": 256, "steps": 6000, "euler_nfes": [2]},
            "environment": machine,
            "cost": {
                "steps": [
                    {
                        "library": "genlab",
                        "label": "OT-CFM exact",
                        "batch": 256,
                        "median_ms": 10.5,
                        "ratio_to_icfm": 2.0,
                    }
                ]
            },
            "nfe": {
                "summary": {
                    "models": {"otcfm": {"w2": {"euler-2": {"nfe": 2, "mean": 0.3579, "std": 0.01, "n": 2}}}}
                }
            },
        },
    )
    write(
        tmp_path,
        "guidance.json",
        {
            "hardware": {"processor": "", "torch": "2.13.0+cpu", "threads": 1},
            "train_steps": 3000,
            "seed": 0,
            "guidance": [{"w": 2.0, "acc": 0.999, "fd": 15.49, "nfe": 100}],
        },
    )
    write(
        tmp_path,
        "scaling.json",
        {
            "benchmark": "scaling",
            "machine": machine,
            "budget_s": 25.0,
            "configs": [
                {
                    "config": "moons",
                    "rows": [
                        {
                            "table": "strong",
                            "launcher": "plain",
                            "nproc": 1,
                            "global_batch": 256,
                            "steps": 100,
                            "steps_per_s": 100.0,
                            "samples_per_s": 25600.0,
                        },
                        {
                            "table": "strong",
                            "launcher": "torchrun",
                            "nproc": 2,
                            "global_batch": 256,
                            "steps": 100,
                            "steps_per_s": 150.0,
                            "samples_per_s": 38400.0,
                        },
                    ],
                }
            ],
        },
    )
    # a generic result file with its own markdown: embedded with demoted headings
    write(
        tmp_path,
        "schedulers.json",
        {"argv": ["benchmarks/schedulers.py", "--x"], "markdown": "# Compare\n\n| x | 1 |"},
    )
    # a genlab compare result (copied from its --out folder) with its table next to it
    write(
        tmp_path,
        "compare_moons.json",
        {
            "command": "genlab compare a b --budget 5steps --seeds 2",
            "settings": {"seeds": 2},
            "budget": "5 steps",
            "rows": [
                {"name": "a", "batch_size": 64, "steps": 5, "summary": {"nfe": 40}},
                {"name": "b", "batch_size": 32, "steps": 5, "summary": {"nfe": 1}},
            ],
            "environment": {"cpu_count": 2, "torch_threads": 1},
        },
    )
    (tmp_path / "compare_moons.md").write_text("| a | 0.512 |\n")
    text = rmd.render(tmp_path)

    toy = section(text, "Flow matching on 2D toys")
    assert "| euler | 8 | 0.432 |" in toy
    assert "genlab 4.250" in toy
    assert row(toy, "batch size").endswith("| 64 |")
    assert "77 per library" in row(toy, "training steps")
    assert row(toy, "genlab commit").startswith("| genlab commit | not recorded")
    assert "CPU model not recorded" in row(toy, "hardware")
    assert "--steps 77 --batch 64" in row(toy, "command")

    fam = section(text, "Every family")
    assert "| VAE | `moons_vae` | 321 | 1 | 0.247 ± 0.010 |" in fam
    assert "Test CPU 9000, 4 cores, 3 torch thread(s)" in row(fam, "hardware")
    assert "`abcdef0123`" in row(fam, "genlab commit")
    assert row(fam, "batch size") == "| batch size | not recorded |"
    assert "python benchmarks/families.py --budget-2d 5" in row(fam, "command")

    lik = section(text, "NLL, log-prob")
    assert row(lik, "RealNVP").startswith("| RealNVP | 6000 | 1.877 | 0.190 |")
    assert row(lik, "seeds") == "| seeds | not recorded |"
    assert "core count not recorded" in row(lik, "hardware")

    dif = section(text, "Quality against NFE")
    assert row(dif, "dpm").startswith("| dpm | 10 | 0.222 |")
    assert row(dif, "torch") == "| torch | not recorded |"

    cou = section(text, "OT cost per step")
    assert row(cou, "genlab").startswith("| genlab | OT-CFM exact | 256 | 10.50 | 2x |")
    assert "0.358 ± 0.010" in row(cou, "otcfm")
    assert "0, 1" in row(cou, "seeds")
    assert "--seeds 2" in row(cou, "command")
    assert "not run yet: `python benchmarks/couplings.py --part cost`" in text

    gui = section(text, "Classifier-free guidance")
    assert row(gui, "2").startswith("| 2 | 0.999 | 15.49 |")
    assert row(gui, "batch size") == "| batch size | not recorded |"
    assert "CPU model not recorded" in row(gui, "hardware")

    sca = section(text, "Data-parallel")
    assert row(sca, "`moons`").startswith("| `moons` | strong | plain | 1 | 256 |")
    assert "1.50x" in text
    assert row(sca, "seeds") == "| seeds | not recorded |"

    gen = section(text, "Diffusion schedulers")
    assert "#### Compare" in gen and "| x | 1 |" in gen
    assert "--x" in row(gen, "command")
    assert row(gen, "batch size") == "| batch size | not recorded |"

    cmp_ = section(text, "`genlab compare` on moons")
    assert "| a | 0.512 |" in cmp_
    assert row(cmp_, "batch size") == "| batch size | 32/64 |"
    assert row(cmp_, "seeds") == "| seeds | 2 |"
    assert row(cmp_, "NFE / sampler steps") == "| NFE / sampler steps | a 40, b 1 |"
    assert "genlab compare a b --budget 5steps" in row(cmp_, "command")


def test_benchmarks_record_the_commit_they_measured() -> None:
    """Every result JSON records the checkout's commit (it was always None once machine.py
    had moved to app/)."""
    import re
    import shutil

    from genlab.app.machine import git_state

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    state = git_state()
    assert re.fullmatch(r"[0-9a-f]{40}", state["commit"] or "")
    assert isinstance(state["src_genlab_modified"], bool)
