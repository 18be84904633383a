"""The habits the project keeps: the pre-commit hooks run what `make lint` runs."""

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
