"""benchmarks/gpu.py with --device cpu --quick: the GPU check runs end to end on the CPU, so
the script a GPU session runs is known to work before it gets there."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load() -> object:
    sys.path.insert(0, str(ROOT / "benchmarks"))  # gpu.py imports its neighbour _env
    spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_quick_on_the_cpu(tmp_path: Path) -> None:
    gpu = _load()
    out = tmp_path / "gpu.json"
    assert gpu.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0  # type: ignore[attr-defined]
    result = json.loads(out.read_text())
    rows = result["families"]["rows"]
    families = {r["family"] for r in rows if r["status"] == "ok"}
    assert families >= {"flow_matching", "diffusion", "ddpm", "cnf", "realnvp", "vae", "vqvae", "gan"}
    assert families >= {"pix2pix", "cyclegan"}
    for row in rows:
        if row["status"] == "ok":
            assert row["trained_on"] == "cpu" and row["sampled_on"] == "cpu"
            assert row["metrics"] and all(v == v for v in row["metrics"].values())  # no NaN
    precisions = {(r["config"], r["precision"]) for r in rows if r["status"] == "ok"}
    assert {("digits", "fp32"), ("digits", "bf16"), ("digits", "fp16")} <= precisions
    resume = result["families"]["resume"]
    assert resume["status"] == "ok" and resume["step"] == resume["to_steps"]
    modes = {(p["net"], p["mode"]) for p in result["throughput"] if p["status"] == "ok"}
    assert ("2D MLP", "bf16+compile") in modes and ("digits U-Net", "fp32") in modes
    table = out.with_suffix(".md").read_text()
    assert "| digits | flow_matching | fp16 | ok |" in table and "bf16 + compile samples/s" in table
