"""The markdown of a ``genlab compare`` result: ``compare.json`` copied from its ``--out`` folder
into ``benchmarks/results/`` (e.g. as ``compare_digits.json``), with its ``.md`` table and ``.png``
figure beside it. ``genlab compare`` writes those itself; this module only adds the run facts for
``results_md.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _render import facts


def render(name: str, data: dict[str, Any], path: Path) -> list[str]:
    """Run facts, then the table ``genlab compare`` wrote (compare.md) and its figure (compare.png)."""
    rows = data.get("rows", [])
    batches = sorted({str(r.get("batch_size")) for r in rows if r.get("batch_size") is not None})
    nfes = ", ".join(f"{r['name']} {r['summary']['nfe']}" for r in rows)
    steps = ", ".join(f"{r['name']} {r['steps']}" for r in rows)
    out = facts(
        name,
        data,
        batch="/".join(batches) if batches else None,
        training=f"{data.get('budget', '?')} per run, i.e. {steps}" if rows else None,
        seeds=str(data.get("settings", {}).get("seeds")) if data.get("settings") else None,
        nfe=nfes or None,
        command=data.get("command"),
    )
    md = path.with_suffix(".md")
    if md.exists():
        out += ["", md.read_text().strip()]
    png = path.with_suffix(".png")
    if png.exists():
        out += ["", f"![samples of every model, seed 0](results/{png.name})"]
    return out
