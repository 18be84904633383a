"""Gather the docs site's pages into build/docs for `make docs` (mkdocs.yml reads them there):
the README as the home page, docs/*.md and their images (docs/benchmarks.md with the tables
of benchmarks/results/ in place of its marker line: scripts/benchmark_records.py), the five
notebooks (executed at build time by mkdocs-jupyter), and one API page per module, generated
from the docstrings by mkdocstrings."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from benchmark_records import MARKER, records_markdown  # scripts/, beside this file

ROOT = Path(__file__).resolve().parent.parent
# API pages: the d2l surface (one backend shown; the other two have the same names), and the
# modules a reader calls directly
API = {
    "d2l-surface": (
        "The d2l surface (PyTorch tab)",
        [f"nin.backends.torch.{m}" for m in ("ops", "model", "trainer", "parallel")],
    ),
    "classic": (
        "The classic editions' train_ch6 (d2l-en 0.17, d2l-zh 2.0)",
        ["nin.classic", "nin.backends.torch.classic"],
    ),
    "training": (
        "Recipes, the loop, history, board, one run, TTA",
        ["nin.recipes", "nin.training", "nin.history", "nin.runner", "nin.tta"],
    ),
    "callbacks": ("Callbacks", ["nin.callbacks"]),
    "spec": ("The spec", ["nin.spec"]),
    "weights": ("Weights", ["nin.weights"]),
    "compare": ("Comparing the frameworks", ["nin.compare"]),
    "resources": ("Resources", ["nin.resources"]),
    "export": ("Export", ["nin.export"]),
    "distributed": ("Data parallelism", ["nin.distributed"]),
}


def assemble(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # the README's links into docs/ point from the site's root, where docs/ is the top
    (out / "index.md").write_text((ROOT / "README.md").read_text().replace("](docs/", "]("))
    for page in sorted((ROOT / "docs").glob("*.md")):
        shutil.copy(page, out / page.name)
    benchmarks = out / "benchmarks.md"
    text = benchmarks.read_text()
    if MARKER not in text:
        raise SystemExit(f"docs/benchmarks.md lost its marker line {MARKER!r}: put it back")
    benchmarks.write_text(text.replace(MARKER, records_markdown()))
    shutil.copytree(ROOT / "docs" / "img", out / "img")
    shutil.copytree(
        ROOT / "notebooks", out / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints")
    )
    (out / "api").mkdir()
    for name, (title, modules) in API.items():
        body = "\n\n".join(f"::: {m}" for m in modules)
        (out / "api" / f"{name}.md").write_text(f"# {title}\n\n{body}\n")


if __name__ == "__main__":
    assemble(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "docs")
