"""nin.errors: a message names its arguments as data; Python and the command line word them."""

import pickle

import pytest

from nin.errors import ArgumentError, Flag, Message, Placeholder, arg, worded

# the command line's flags by the Python name each sets, as nin.cli.flags.flag_words reads them
FLAGS = {
    "resume": Flag("--resume", sets=True),
    "fast": Flag("--no-fast", sets=False),
    "normalize": Flag("--normalize", sets=True, opposite="--no-normalize"),
    "out_dir": Flag("--out"),
    "root": Flag("--data-dir"),
    "max_epochs": Flag("--epochs"),
    "recipe": Flag("--recipe"),
}


@pytest.mark.parametrize(
    "mention, python, cli",
    [
        (arg("out_dir"), "`out_dir`", "--out"),
        (arg("resume", True), "`resume=True`", "--resume"),
        (arg("resume", False), "`resume=False`", "drop --resume"),
        (arg("fast", False), "`fast=False`", "--no-fast"),
        (arg("fast", True), "`fast=True`", "drop --no-fast"),
        (arg("normalize", False), "`normalize=False`", "--no-normalize"),
        (arg("max_epochs", 3), "`max_epochs=3`", "--epochs 3"),
        (arg("recipe", "nin"), "`recipe='nin'`", "--recipe nin"),
        (arg("root", Placeholder("<folder>")), "`root=<folder>`", "--data-dir <folder>"),
        (arg("gradient_clip_val", 1), "`gradient_clip_val=1`", "`gradient_clip_val=1`"),
    ],
)
def test_a_mention_in_python_words_and_as_its_flag(mention, python, cli):
    """Python's words by default; the flag where the command line has one, else Python's."""
    message = Message("try {x}", x=mention)
    assert str(message) == f"try {python}"
    assert message.render(FLAGS) == f"try {cli}"


def test_an_argument_error_is_a_value_error_in_python_words_that_keeps_its_fields():
    err = ArgumentError(
        "{resume} needs {out}: {n:.1f} (no {{braces}} lost)",
        resume=arg("resume", True),
        out=arg("out_dir"),
        n=2.25,
    )
    assert isinstance(err, ValueError)
    assert str(err) == "`resume=True` needs `out_dir`: 2.2 (no {braces} lost)"
    assert worded(err, FLAGS) == "--resume needs --out: 2.2 (no {braces} lost)"
    assert err.fields == ("resume", "out_dir")
    with pytest.raises(ValueError, match=r"`resume=True` needs `out_dir`"):
        raise err
    again = pickle.loads(pickle.dumps(err))  # as a worker process hands it back
    assert str(again) == str(err) and again.fields == err.fields


def test_messages_nest_and_any_exception_can_carry_one():
    """A message inside a message is worded with the same flags; an exception of another
    class (the OS's, a RuntimeError) carries one as its only argument."""
    fix = Message("point {root} at a folder", root=arg("root"))
    message = Message("{path}: missing. {fix}", path="/tmp/{x}", fix=fix)
    assert message.fields == ("root",)
    err = FileNotFoundError(message)
    assert str(err) == "/tmp/{x}: missing. point `root` at a folder"
    assert worded(err, FLAGS) == "/tmp/{x}: missing. point --data-dir at a folder"


def test_text_that_is_not_a_message_is_said_as_it_is():
    """A framework's or the OS's error, and a template without values, are left alone."""
    assert worded(OSError(2, "No such file"), FLAGS) == "[Errno 2] No such file"
    assert worded("`resume=True` {as is}", FLAGS) == "`resume=True` {as is}"
    assert worded(Message("{as is}"), FLAGS) == "{as is}"
    assert Message("{as is}").fields == ()
