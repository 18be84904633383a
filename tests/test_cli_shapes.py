"""`python -m nin shapes`: the chapter's table and counts per backend, and its errors."""

import json

from conftest import run_python
from nin.backends import get_backend
from nin.cli import main

EXPECTED_CHW = [
    [96, 54, 54],
    [96, 26, 26],
    [256, 26, 26],
    [256, 12, 12],
    [384, 12, 12],
    [384, 5, 5],
    [384, 5, 5],
    [10, 5, 5],
]


def test_shapes_json(backend, capsys):
    assert main(["shapes", "--backend", backend, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[backend]
    assert result["params"] == 1_992_166
    dims = [shape[1:] for _, shape in result["layers"]]
    if result["layout"] == "NHWC":
        dims = [[d[2], d[0], d[1]] if len(d) == 3 else d for d in dims]
    assert dims[:8] == EXPECTED_CHW
    assert dims[-1] == [10]


def test_shapes_table_says_layout(backend, capsys):
    assert main(["shapes", "--backend", backend, "--size", "96"]) == 0
    out = capsys.readouterr().out
    assert get_backend(backend).LAYOUT in out
    assert "matches the spec's 1,992,166" in out


def test_too_small_exits_nonzero_before_any_framework():
    out = run_python(
        "import sys; from nin.cli import main; "
        "code = main(['shapes', '--size', '50']); "
        "print(code, sorted({'torch','mxnet','tensorflow','jax','flax'} & set(sys.modules)))"
    )
    assert out.stdout.strip() == "2 []"
    assert "input 50x50 is too small" in out.stderr and "67x67" in out.stderr


def test_unknown_backend_is_a_clear_error(capsys):
    assert main(["shapes", "--backend", "caffe"]) == 2
    assert "valid backends are torch, mxnet, tensorflow" in capsys.readouterr().err
