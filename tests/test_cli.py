"""The command line's package, nin/cli/: a flag several commands take is declared once, in
flags.py; defaults are read where they live (the training plans, the backend registry) when
the parser is built; the modules and functions stay small."""

import argparse
import ast
import re
import sys
from collections import Counter

import pytest

from conftest import ROOT
from nin.backends import BACKENDS
from nin.cli import build_parser
from nin.cli.wording import flag_words
from nin.errors import ArgumentError, Placeholder, arg
from nin.recipes import PLANS, RECIPE_FLAGS, Plan

CLI = ROOT / "nin" / "cli"

# a command's own flag that shares a recipe flag's name with a meaning of its own: export's
# --normalize puts the standardization in the ONNX graph, resources' --optimizer names whose
# state the memory counts (momentum included)
OWN_MEANING = {"--normalize": {"export"}, "--optimizer": {"resources"}}


def _literal_flags() -> Counter:
    """How often each flag is written out in an add_argument call under nin/cli/."""
    found: Counter = Counter()
    for path in CLI.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                found.update(
                    a.value
                    for a in node.args
                    if isinstance(a, ast.Constant) and str(a.value).startswith("--")
                )
    return found


def _declarers(monkeypatch) -> dict:
    """{(command, flag): the module whose code declared it} as build_parser runs."""
    seen, command = {}, [None]
    add_parser = argparse._SubParsersAction.add_parser
    add_argument = argparse._ActionsContainer.add_argument

    def recording_add_parser(self, name, **kwargs):
        command[0] = name
        return add_parser(self, name, **kwargs)

    def recording_add_argument(self, *args, **kwargs):
        caller = sys._getframe(1).f_globals["__name__"]
        for flag in (a for a in args if a.startswith("--") and caller.startswith("nin.")):
            seen[(command[0], flag)] = caller
        return add_argument(self, *args, **kwargs)

    monkeypatch.setattr(argparse._SubParsersAction, "add_parser", recording_add_parser)
    monkeypatch.setattr(argparse._ActionsContainer, "add_argument", recording_add_argument)
    build_parser()
    return seen


def test_no_flag_is_written_out_twice():
    twice = {flag: n for flag, n in _literal_flags().items() if n > 1}
    assert not twice, f"flags declared in more than one place under nin/cli/: {twice}"
    assert _literal_flags()["--batch-size"] == 1


def test_every_flag_several_commands_take_comes_from_flags_py(monkeypatch):
    declared = _declarers(monkeypatch)
    commands: dict = {}
    for command, flag in declared:
        commands.setdefault(flag, set()).add(command)
    shared = {flag for flag, names in commands.items() if len(names) > 1}
    assert {"--batch-size", "--seed", "--data-dir", "--backend", "--out"} <= shared
    wrong = {
        (command, flag, module)
        for (command, flag), module in declared.items()
        if flag in shared and module != "nin.cli.flags" and command not in OWN_MEANING.get(flag, ())
    }
    assert not wrong, f"shared flags declared outside nin/cli/flags.py: {sorted(wrong)}"
    recipe_flags = {"--" + name.replace("_", "-") for name in RECIPE_FLAGS}
    assert set(OWN_MEANING) <= recipe_flags  # the exceptions are only these name clashes


def test_train_defaults_are_the_sprint_plan_read_when_the_parser_is_built(monkeypatch):
    """`nin train` with no flags is the sprint plan, whatever the plan says; `make train`
    spells the same run out; `nin experiment` keeps nin's recipe, with which
    docs/exercises.md was measured."""

    def defaults(plan):
        return (plan.recipe, plan.epochs, plan.resize, plan.batch_size, plan.augment, plan.tta)

    def train_defaults():
        args = build_parser().parse_args(["train"])
        return args, (args.recipe, args.epochs, args.resize, args.batch_size, args.augment,
                      args.tta)  # fmt: skip

    args, got = train_defaults()
    plan = PLANS["sprint"]
    assert got == defaults(plan)
    assert args.limit_train_batches == plan.limit_train_batches
    # --lr's default is the recipe's own lr (--recipe book changes it): the plan has none
    assert args.lr is None and plan.lr is None
    other = Plan("quality", None, epochs=5, resize=80, batch_size=32, augment="flip",
                 tta="flip", limit_train_batches=7)  # fmt: skip
    monkeypatch.setitem(PLANS, "sprint", other)
    args, got = train_defaults()
    assert got == defaults(other) and args.limit_train_batches == 7
    monkeypatch.undo()

    parse = build_parser().parse_args
    make_train = (ROOT / "Makefile").read_text().split("\ntrain:")[1].splitlines()[1].split()
    flags = make_train[make_train.index("train") + 1 :]
    assert vars(parse(["train", *flags])) == vars(parse(["train"]))
    assert parse(["experiment"]).recipe == "nin"


def test_backend_choices_are_the_registry_s(monkeypatch):
    monkeypatch.setitem(BACKENDS, "jax", ("jax", "jax"))
    parse = build_parser().parse_args
    assert parse(["train", "--backend", "jax"]).backend == "jax"
    assert parse(["experiment", "--backend", "jax"]).backend == "jax"
    assert parse(["compare"]).backends == "torch,mxnet,tensorflow,jax"
    assert parse(["train"]).backend == parse(["compare"]).reference == next(iter(BACKENDS))


@pytest.mark.parametrize(
    "path", [*sorted(CLI.glob("*.py")), CLI.parent / "training.py"], ids=lambda p: p.name
)
def test_the_modules_and_their_functions_are_small(path):
    """Under 600 lines a module, 60 a function: the command line's modules and the loop's
    (nin/training.py), the two that once held four jobs each."""
    text = path.read_text()
    assert len(text.splitlines()) < 600
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert not long, f"{path.name}: {long}"


def test_the_cli_never_branches_on_a_backend_s_name():
    """What differs between backends is asked of the backend (`nin.distributed.Launch`, its
    launch.py); the command line names none (docs/design.md)."""
    pattern = re.compile(r'backend ==|backend !=|"torch"|"mxnet"|"tensorflow"')
    said = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(CLI.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not said, said


# Each command says a library message's arguments as its own flags (nin.cli.wording, read off
# its parser): these are the words the command line printed when a regex table rewrote the
# messages' text, and stay so.
@pytest.mark.parametrize(
    "command, mention, said",
    [
        ("train", arg("resume", True), "--resume"),
        ("train", arg("overwrite", True), "--overwrite"),
        ("train", arg("out_dir"), "--out"),
        ("train", arg("root", Placeholder("<folder>")), "--data-dir <folder>"),
        ("train", arg("root"), "--data-dir"),
        ("train", arg("lr"), "--lr"),
        ("train", arg("fast", False), "--no-fast"),
        ("train", arg("fast", True), "drop --no-fast"),
        ("train", arg("recipe", "nin"), "--recipe nin"),
        ("train", arg("optimizer", "sgd"), "--optimizer sgd"),
        ("train", arg("max_epochs", 3), "--epochs 3"),
        ("train", arg("max_epochs"), "--epochs"),
        ("train", arg("batch_size", 64), "--batch-size 64"),
        ("train", arg("batch_size"), "--batch-size"),
        ("train", arg("resize", 67), "--resize 67"),
        ("train", arg("backend"), "--backend"),
        ("train", arg("normalize"), "--normalize"),
        ("train", arg("normalize", False), "--no-normalize"),
        ("train", arg("devices", 2), "--devices 2"),
        ("experiment", arg("overwrite", True), "--overwrite"),
        ("experiment", arg("out_dir"), "--out"),
        ("shapes", arg("size", 67), "--size 67"),
        ("compare", arg("size", 67), "--size 67"),
        ("compare", arg("root"), "--data-dir"),
        ("export", arg("normalize"), "--normalize"),
        # an argument the command has no flag for keeps its Python name
        ("train", arg("gradient_clip_val", 1), "`gradient_clip_val=1`"),
        ("train", arg("num_gpus", 1), "`num_gpus=1`"),
        ("compare", arg("fast", False), "`fast=False`"),
    ],
)
def test_each_command_says_an_argument_as_its_own_flag(command, mention, said):
    parser = build_parser()
    args = parser.parse_args([command] + _REQUIRED.get(command, []))
    err = ArgumentError("try {it}", it=mention)
    assert args.wording(err) == f"try {said}"
    assert str(err) == f"try {mention.render()}"  # Python's words, whatever the command


_REQUIRED = {"export": ["--weights", "w.npz", "--format", "onnx", "--out", "m.onnx"]}


def test_text_that_is_not_a_library_message_is_printed_as_it_is():
    """A framework's or the OS's error: no flag is read into it."""
    wording = build_parser().parse_args(["train"]).wording
    assert wording(OSError("`resume=True` and `out_dir`")) == "`resume=True` and `out_dir`"


def _unstructured_mentions(source: str, names: set[str]) -> list[int]:
    """The lines of `source` whose string literals (docstrings aside) write one of `names` in
    backticks (`` `out_dir` ``, `` `resume=True` ``) instead of an arg() the CLI can word."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    pattern = re.compile(r"`(%s)[`=]" % "|".join(sorted(names)))
    return sorted(
        {
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and pattern.search(node.value)
        }
    )


def test_the_scan_finds_a_mention_written_into_text_and_only_there():
    source = (
        'def f(out_dir):\n    """`out_dir`: where; `resume=True` continues."""\n'
        '    raise ValueError(f"{out_dir}: pass `resume=True`")\n'
    )
    assert _unstructured_mentions(source, {"resume", "out_dir"}) == [3]


def test_no_library_message_writes_a_flagged_argument_into_its_text():
    """Every argument a command has a flag for is named in messages as an arg() (nin.errors),
    so that the CLI says the flag without reading text; docstrings may name it as they like."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    names = {name for p in subparsers.choices.values() for name in flag_words(p)}
    assert {"resume", "out_dir", "root", "max_epochs", "fast"} <= names
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / "nin").rglob("*.py"))
        for line in _unstructured_mentions(path.read_text(), names)
    ]
    assert not found, found


@pytest.mark.parametrize("command", ["train", "experiment"])
def test_no_fast_sets_the_argument_it_is_worded_as(command):
    """--no-fast is `fast=False`, as its parser declares and as messages say it."""
    parser = build_parser()
    assert parser.parse_args([command]).fast is True
    assert parser.parse_args([command, "--no-fast"]).fast is False
