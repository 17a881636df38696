"""The documentation site: it builds offline with ``mkdocs build --strict``, its links to code
are validated (a link to a name a file does not define fails the build), and every ```python
block of every page runs.

Tutorials are written at full settings; CI shrinks sizes through ``# ci: VALUE`` markers: on a
line ``steps = 3000  # ci: 30`` the numeric literal on the right is replaced by 30 before the
page runs. A marker anywhere else is an error, so a substitution can never silently do nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

FENCE = re.compile(r"^([ \t]*)```python[^\n]*\n(.*?)^\1```[ \t]*$", re.M | re.S)
MARKER = re.compile(r"#\s*ci:")
CI_ASSIGNMENT = re.compile(
    r"^(?P<lhs>[ \t]*[A-Za-z_]\w*[ \t]*=[ \t]*)(?P<literal>[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?)"
    r"(?P<pad>[ \t]*)#[ \t]*ci:[ \t]*(?P<value>[0-9][0-9_.eE+-]*)[ \t]*$",
    re.M,
)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line of the code in the page, dedented code) of each ```python block."""
    blocks = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start(2)) + 1
        blocks.append((line, textwrap.dedent(m.group(2))))
    return blocks


def ci_substitute(code: str) -> tuple[str, int]:
    """Replace the literal of every ``name = LITERAL  # ci: VALUE`` line by VALUE."""
    new, count = CI_ASSIGNMENT.subn(r"\g<lhs>\g<value>\g<pad># ci: \g<value>", code)
    return new, count


def pages_with_code() -> list[Path]:
    pages = sorted(DOCS.rglob("*.md")) + [ROOT / "README.md"]
    return [p for p in pages if p.exists() and python_blocks(p.read_text(encoding="utf-8"))]


def run_mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict``; a dead proxy makes any attempt to use the network fail."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"}
    dead = "http://127.0.0.1:9"
    env.update(http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead, HTTPS_PROXY=dead, no_proxy="", NO_PROXY="")
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "--site-dir", str(site)]
    return subprocess.run(cmd, cwd=config.parent, env=env, capture_output=True, text=True, timeout=300)


def test_docs_build_offline_and_strict(tmp_path: Path) -> None:
    result = run_mkdocs(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "tutorials" / "flow_matching_moons" / "index.html").exists()
    generated = tmp_path / "site" / "source" / "src" / "genlab" / "paths" / "gaussian.py" / "index.html"
    assert 'id="GaussianPath.sample"' in generated.read_text(encoding="utf-8")
    assert not (tmp_path / "site" / "hooks").exists()


def _mini_site(tmp_path: Path, page: str) -> Path:
    """A minimal site with the real hook, the real src/ and one page."""
    (tmp_path / "docs").mkdir(parents=True)
    (tmp_path / "docs" / "index.md").write_text(page, encoding="utf-8")
    (tmp_path / "src").symlink_to(ROOT / "src", target_is_directory=True)
    shutil.copytree(DOCS / "hooks", tmp_path / "hooks")
    # the real site's validation settings, so loosening them in mkdocs.yml fails this test
    real = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    config = tmp_path / "mkdocs.yml"
    # and its Markdown extensions: the generated source pages are fenced for superfences
    # (plain fenced_code pairs the fences of consecutive chunks wrongly)
    extensions = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["markdown_extensions"]
    settings = {
        "site_name": "t",
        "hooks": ["hooks/source_links.py"],
        "validation": real["validation"],
        "markdown_extensions": extensions,
    }
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return config


def test_source_links_are_validated(tmp_path: Path) -> None:
    """A link to a name the file defines builds; a missing name or file fails --strict."""
    good = "[`GaussianPath.sample`](../src/genlab/paths/gaussian.py#GaussianPath.sample)\n"
    result = run_mkdocs(_mini_site(tmp_path / "good", good), tmp_path / "good" / "site")
    assert result.returncode == 0, result.stderr
    bad = (
        "[no such name](../src/genlab/paths/gaussian.py#NoSuchName)\n\n"
        "[no such file](../src/genlab/paths/no_such_module.py#GaussianPath)\n"
    )
    result = run_mkdocs(_mini_site(tmp_path / "bad", bad), tmp_path / "bad" / "site")
    assert result.returncode != 0
    assert "NoSuchName" in result.stderr and "no_such_module.py" in result.stderr, result.stderr


def test_ci_markers_are_numeric_assignments() -> None:
    """Every ``# ci:`` marker sits on ``name = NUMBER`` (so substituting cannot do nothing)."""
    assert ci_substitute("steps = 3_000  # ci: 30\n") == ("steps = 30  # ci: 30\n", 1)
    assert ci_substitute("x = f(3)  # ci: 1\n")[1] == 0
    for page in pages_with_code():
        for line, code in python_blocks(page.read_text(encoding="utf-8")):
            markers = len(MARKER.findall(code))
            assert ci_substitute(code)[1] == markers, f"{page}:{line}: a '# ci:' marker not on NAME = NUMBER"


@pytest.mark.parametrize("page", pages_with_code(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_code_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's python blocks, in order, in one namespace, at CI sizes, in a tmp directory.
    Code is compiled at its line in the page, so tracebacks point into the .md file."""
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        for line, code in python_blocks(page.read_text(encoding="utf-8")):
            code = "\n" * (line - 1) + ci_substitute(code)[0]
            exec(compile(code, str(page), "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
