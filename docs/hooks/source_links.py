"""MkDocs hook: make repo-relative links to code and tests work, and validate them.

Docs pages link to the code the way GitHub and editors understand, relative to the page:
``[`GaussianPath.sample`](../src/genlab/paths/gaussian.py#GaussianPath.sample)``. MkDocs only
sees files under ``docs/``, so this hook

1. (``on_files``) adds one generated page per ``.py`` file under ``src/genlab/`` and
   ``tests/`` (and per packaged YAML config), at ``source/<repo path>.md``, showing the file
   as highlighted code with line numbers and an anchor ``<a id="QUALNAME">`` before every
   class, function and method (``Class``, ``Class.method``, ``function``, found with ``ast``);
   the pages are not in the nav;
2. (``on_page_markdown``) rewrites every inline link whose target, resolved from the page's
   place in ``docs/``, lies under ``src/`` or ``tests/`` into a relative link to that
   generated page, keeping the anchor.

MkDocs' own validation then checks the rewritten links: with ``validation: {links:
{not_found: warn, anchors: warn}}`` and ``mkdocs build --strict`` a link to a missing file or
to a name that the file does not define fails the build.
"""

from __future__ import annotations

import ast
import os
import posixpath
import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files, InclusionLevel
from mkdocs.structure.pages import Page

SOURCE_DIRS = ("src", "tests")  # repo folders whose files get a generated page
PATTERNS = ("src/genlab/**/*.py", "src/genlab/configs/*.yaml", "tests/**/*.py")
PREFIX = "source"  # generated pages live at docs/source/<repo path>.md (virtually)
LINK = re.compile(r"(?<!!)(\[[^\]\n]*\]\()([^)\s#]+)(#[^)\s]*)?(\s+\"[^\"]*\")?\)")


def _repo_root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _definitions(source: str) -> dict[int, list[str]]:
    """{first line (1-based, decorators included): [qualified names defined there]}."""
    found: dict[int, list[str]] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                line = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                found.setdefault(line, []).append(name)
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def _fence(text: str) -> str:
    """A backtick fence longer than any backtick run in ``text``."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _page(rel: str, source: str) -> str:
    """Markdown of the generated page: the file in code blocks split before each definition."""
    lang = "python" if rel.endswith(".py") else "yaml"
    defs = _definitions(source) if lang == "python" else {}
    lines = source.splitlines()
    starts = sorted({1, *defs})
    fence = _fence(source)
    out = [f"# `{rel}`\n"]
    for i, start in enumerate(starts):
        end = starts[i + 1] - 1 if i + 1 < len(starts) else len(lines)
        if start in defs:  # a paragraph of anchors, then (after a blank line) the code
            out.append("".join(f'<a id="{name}"></a>' for name in defs[start]) + "\n")
        chunk = "\n".join(lines[start - 1 : end])
        if chunk.strip():
            out.append(f'{fence}{lang} linenums="{start}"\n{chunk}\n{fence}\n')
    return "\n".join(out) + "\n"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    root = _repo_root(config)
    for pattern in PATTERNS:
        for path in sorted(root.glob(pattern)):
            rel = path.relative_to(root).as_posix()
            content = _page(rel, path.read_text(encoding="utf-8"))
            uri = f"{PREFIX}/{rel}.md"
            files.append(File.generated(config, uri, content=content, inclusion=InclusionLevel.NOT_IN_NAV))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.generated_by:  # our own source pages: code, not links
        return markdown
    root = _repo_root(config)
    page_dir = posixpath.dirname(page.file.src_uri)

    def rewrite(m: re.Match[str]) -> str:
        opening, target, anchor, title = m.group(1), m.group(2), m.group(3) or "", m.group(4) or ""
        if "://" in target or target.startswith(("/", "mailto:")):
            return m.group(0)
        resolved = os.path.normpath(os.path.join(config.docs_dir, page_dir, target))
        rel = Path(os.path.relpath(resolved, root)).as_posix()
        if rel.split("/")[0] not in SOURCE_DIRS:
            return m.group(0)
        new = posixpath.relpath(f"{PREFIX}/{rel}.md", page_dir or ".")
        return f"{opening}{new}{anchor}{title})"

    return LINK.sub(rewrite, markdown)
