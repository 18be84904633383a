"""The habits the project keeps: the pre-commit hooks run what `make lint` runs, and nin's
modules import each other without a circle."""

import ast
import re
import subprocess
import sys

from conftest import ROOT


def test_pre_commit_config_is_valid_and_runs_the_lint_commands():
    config = ROOT / ".pre-commit-config.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    entries = re.findall(r"entry: (\w+(?: \w+)?)", config.read_text())
    makefile = (ROOT / "Makefile").read_text()
    lint = makefile[makefile.index("\nlint:") :].split("\n\n")[0]
    assert entries == ["ruff check", "ruff format", "mypy"]
    for command in entries:
        assert f"$(PY) -m {command}" in lint, (command, lint)


def _module_name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _node(module: str) -> str:
    """A backend package (nin/backends/<name>/) is one node: its modules import each other."""
    parts = module.split(".")
    if parts[:2] == ["nin", "backends"] and len(parts) > 2 and parts[2] != "common":
        return ".".join(parts[:3])
    return module


def nin_import_graph() -> dict[str, set[str]]:
    """Each nin module and the nin modules it imports, read from the source with `ast`: every
    `import nin.x` and `from nin.x import y` (y a module too, where it is one), at the top of
    the file and inside functions alike, relative imports resolved."""
    paths = {_module_name(p): p for p in sorted((ROOT / "nin").rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = graph.setdefault(_node(module), set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # from . import x, from ..y import z
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                if name in paths and name != "nin" and _node(name) != _node(module):
                    found.add(_node(name))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of `graph` as [a, b, ..., a], or [] where there is none (depth-first)."""
    state: dict[str, str] = {}  # 'open' on the current path, 'done' when fully explored
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_import_graph_sees_top_level_and_function_level_imports():
    graph = nin_import_graph()
    assert "nin.recipes" in graph["nin.training"]  # at the top of training.py
    assert "nin.weights" in graph["nin.callbacks"]  # inside export_run_files
    assert "nin.training" in graph["nin.backends.torch"]  # one node for the package


def test_nin_modules_import_each_other_without_a_cycle():
    """No import circle among nin's modules (a backend package counts as one): each module
    sits on a floor and imports only from those below it."""
    cycle = find_cycle(nin_import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)
