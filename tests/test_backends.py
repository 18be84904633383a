"""Each framework's network against the spec: layer shapes and parameter counts."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, needs, run_python
from nin import spec as S
from nin.backends import get_backend, resolve_backends
from nin.resources import num_params


def _to_chw(shape, layout):
    """Drop the batch dim; NHWC -> CHW so every backend compares with the spec's C x H x W."""
    dims = tuple(shape[1:])
    if layout == "NHWC" and len(dims) == 3:
        return (dims[2], dims[0], dims[1])
    return dims


@pytest.mark.parametrize("size", [67, 96, 224, 227])
@pytest.mark.parametrize("num_classes", [10, 5])
def test_shapes_and_params_match_spec(backend, size, num_classes):
    B = get_backend(backend)
    spec = S.chapter_spec(num_classes)
    net = B.build(spec)
    rows = B.layer_shapes(net, size)
    expected = S.output_shapes(spec, size)
    assert len(rows) == len(expected) == 10
    for (name, shape), row in zip(rows, expected):
        got = _to_chw(shape, B.LAYOUT)
        if row.kind == "GlobalAvgPool" and len(got) == 1:  # Keras drops the 1 x 1
            got = got + (1, 1)
        assert got == row.shape, f"{backend} {name}: {got} != spec {row.shape}"
    assert B.count_params(net) == num_params(spec, size)


def test_top_level_layers_are_the_chapters(backend):
    B = get_backend(backend)
    names = [name for name, _ in B.layer_shapes(B.build(S.chapter_spec()), 96)]
    blocks = [names[i] for i in (0, 2, 4, 7)]
    assert len(set(blocks)) == 1 and "Sequential" in blocks[0]
    assert all("Pool" in names[i] for i in (1, 3, 5, 8))
    assert names[6] == "Dropout" and names[9] == "Flatten"


def test_chapter_nin_block_signature(backend):
    B = get_backend(backend)
    blk = B.nin_block(16, kernel_size=3, strides=1, padding=1)
    channels_last = B.LAYOUT == "NHWC"
    shape = (2, 9, 9, 3) if channels_last else (2, 3, 9, 9)
    x = B.normal(shape) if hasattr(B, "normal") else B.randn(*shape)  # the tab's helper
    if hasattr(blk, "initialize"):  # Gluon's deferred initialization
        blk.initialize()
    y = blk(x)
    assert tuple(y.shape) == ((2, 9, 9, 16) if channels_last else (2, 16, 9, 9))
    assert B.to_numpy(y).min() >= 0  # ends with a ReLU


@needs("tensorflow")
def test_tensorflow_refuses_padding_it_cannot_match():
    tfb = get_backend("tensorflow")
    spec = S.chapter_spec().replace(layers=(S.NiNBlock(8, kernel=3, stride=2, padding=1),))
    with pytest.raises(ValueError, match="padding=1.*stride 2"):
        tfb.build(spec)


def test_unknown_backend_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown backend 'caffe'.*torch, mxnet, tensorflow, jax"):
        get_backend("caffe")


def test_aliases():
    assert resolve_backends("pytorch,tf") == ["torch", "tensorflow"]


BROKEN = """
import sys
sys.modules["mxnet"] = None          # as if MXNet failed to import
from nin.backends import get_backend, BackendUnavailableError
try:
    get_backend("mxnet")
except BackendUnavailableError as err:
    print("ERR", err)
print("OK", get_backend("torch").count_params(get_backend("torch").build(
    __import__("nin.spec").spec.chapter_spec())))
"""


def test_broken_framework_leaves_others_working():
    out = run_python(BROKEN)
    assert out.returncode == 0, out.stderr
    assert "ERR backend 'mxnet' is unavailable" in out.stdout
    assert "pip install -e .[mxnet]" in out.stdout
    assert "OK 1992166" in out.stdout


@needs("torch", "tensorflow")
def test_cli_reports_broken_framework_and_runs_the_others(tmp_path):
    fake = tmp_path / "mxnet"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('simulated broken install')\n")
    out = run_python(
        "import sys; from nin.cli import main; "
        "sys.exit(main(['shapes', '--backend', 'all', '--json', '--size', '96']))",
        env_extra={"PYTHONPATH": f"{tmp_path}:{ROOT}"},
    )
    assert out.returncode == 1
    result = json.loads(out.stdout)
    assert "simulated broken install" in result["mxnet"]["error"]
    assert result["torch"]["params"] == result["tensorflow"]["params"] == 1_992_166


def test_every_backend_exposes_the_same_names(backend):
    """One module per chapter tab, with the same public names, and the tab's own helpers
    beside them: a random-tensor one (the chapter calls `randn` in PyTorch and MXNet,
    `normal` in TensorFlow; JAX's `normal` draws from `get_key`)."""
    from nin.backends import CLASSIC_TABS
    from nin.backends.common import CLASSIC_SURFACE, SURFACE

    B = get_backend(backend)
    classic = set(CLASSIC_SURFACE) if backend in CLASSIC_TABS else set()
    own = set(B.__all__) - set(SURFACE) - classic
    assert set(SURFACE) | classic <= set(B.__all__) and len(B.__all__) == len(set(B.__all__))
    assert not (set(CLASSIC_SURFACE) - classic) & set(B.__all__)  # JAX: no classic edition
    assert own & {"randn", "normal"}, f"{backend} has no random-tensor helper"
    assert all(hasattr(B, name) for name in B.__all__)


def test_every_backend_package_has_the_same_layout(backend):
    """Each tab is a package of framework code: `ops` (primitives, devices), `model` (d2l's
    classes), `trainer`, `parallel`, `launch` (`nin train`'s hooks) and, where the tab has a
    classic edition, `classic` (`train_ch6` and its friends, with nin.classic's neutral
    classes); each name of the surface lives where docs/design.md says, and nothing
    framework-neutral hides in the package's __init__."""
    import importlib
    import inspect

    from nin import classic
    from nin.backends import CLASSIC_TABS, common
    from nin.distributed import Launch

    B = get_backend(backend)
    names = common.BACKEND_MODULES + (("classic",) if backend in CLASSIC_TABS else ())
    modules = {m: importlib.import_module(f"{B.__name__}.{m}") for m in names}
    home = {name: "ops" for name in common.OPS_NAMES}
    home.update({name: "model" for name in common.MODEL_NAMES}, Trainer="trainer")
    if "classic" in modules:
        home.update({name: "classic" for name in classic.CLASSIC_NAMES})
    assert set(common.SURFACE) <= set(home)
    for name, module in home.items():
        value = getattr(modules[module], name, None)
        assert value is not None, f"{backend}: {name} is not in {module}"
        if isinstance(value, type) and hasattr(classic, name):  # neutral: one for all
            assert value is getattr(classic, name), f"{backend}: {name} is not nin.classic's"
        elif isinstance(value, type):  # the classes are defined there, not re-exported
            assert value.__module__ == modules[module].__name__, f"{backend}: {name} moved"
        assert getattr(B, name) is value
    assert issubclass(B.Trainer, modules["parallel"].Parallel)  # the engine is a mixin
    # `nin train`'s hooks: a module attribute, outside __all__ (the chapter's d2l surface)
    assert B.launch is modules["launch"] and "launch" not in B.__all__
    assert issubclass(B.launch.Launch, Launch)
    init = inspect.getsource(B)
    assert "def " not in init and "class " not in init, "the __init__ only gathers names"


def test_every_backend_supplies_every_primitive(backend):
    """`spec.build` makes any spec from these; a backend without one fails here."""
    ops = get_backend(backend).OPS
    missing = [name for name in S.PRIMITIVES if not callable(getattr(ops, name, None))]
    assert not missing, f"{backend} lacks the primitives {missing}"


def _amx(monkeypatch=None):
    from nin.backends.mxnet import amx

    if monkeypatch is not None:  # the cases below are Linux on x86-64's, wherever they run
        monkeypatch.setattr(amx.platform, "system", lambda: "Linux")
        monkeypatch.setattr(amx.platform, "machine", lambda: "x86_64")
    return amx


@needs("mxnet")
@pytest.mark.parametrize(
    "flags, environ, granted, expected, cap",
    [
        ("fpu avx512f avx512_bf16", {}, True, "not on this CPU", None),
        ("avx512_bf16 amx_bf16 amx_tile", {"DNNL_MAX_CPU_ISA": "AVX2"}, True, "set by you", "AVX2"),
        ("avx512_bf16 amx_bf16 amx_tile", {}, False, "refused by the kernel", None),
        ("avx512_bf16 amx_bf16 amx_tile", {}, True, "on", "AVX512_CORE_AMX"),
    ],
    ids=["no-amx", "callers-cap-kept", "kernel-refuses", "opened"],
)
def test_mxnet_amx_is_opened_only_where_it_is_safe(
    tmp_path, monkeypatch, flags, environ, granted, expected, cap
):
    """MXNet 1.9.1's oneDNN runs AMX only with its cap raised, and dies of an illegal
    instruction if the cap is raised without Linux's permission for the tiles: the cap is
    raised only after the kernel said yes, and never over the caller's own."""
    amx = _amx(monkeypatch)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    asked = []
    monkeypatch.setattr(amx, "_request_tiles", lambda: asked.append(1) or granted)
    monkeypatch.delitem(sys.modules, "mxnet")  # as before MXNet's first import
    assert amx.open_amx(str(cpuinfo), environ) == expected
    assert environ.get("DNNL_MAX_CPU_ISA") == cap
    assert bool(asked) == ("amx_bf16" in flags)  # the tiles are asked for wherever AMX is


@needs("mxnet")
def test_mxnet_amx_is_late_after_mxnet_ran(tmp_path, monkeypatch):
    amx = _amx(monkeypatch)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: avx512_bf16 amx_bf16\n")
    monkeypatch.setattr(amx, "_request_tiles", lambda: True)
    assert "mxnet" in sys.modules
    assert amx.open_amx(str(cpuinfo), {}) == "late"


def _mxnet_fast_step(hide_amx: bool = False) -> subprocess.CompletedProcess:
    """One MXNet fast step in a fresh process, with oneDNN's verbose log; `hide_amx`: the
    process reads /proc/cpuinfo's flags without AMX's, as on a CPU that lacks it."""
    hide = (
        "import nin.machine as T\n"
        "real = T.cpu_flags\n"
        "T.cpu_flags = lambda path='/proc/cpuinfo': {f for f in real(path) if 'amx' not in f}\n"
    )
    code = (hide if hide_amx else "") + (
        "import numpy as np\n"
        "from nin.backends import mxnet as B\n"
        "import os\n"
        "print('amx', B.amx.STATE, 'cap left for children:', os.environ.get('DNNL_MAX_CPU_ISA'))\n"
        "import mxnet as mx\n"
        "from benchmarks.train import fast_trainer\n"
        "rng = np.random.default_rng(0)\n"
        "images = rng.integers(0, 256, (4, 1, 67, 67)).astype(np.uint8)\n"
        "trainer, batch = fast_trainer('mxnet', images, np.arange(4) % 10, 67)\n"
        "trainer.train_batch(batch); mx.npx.waitall()\n"
        "print('bf16', trainer.bf16)\n"
    )
    env = {"DNNL_VERBOSE": "1", "PYTHONPATH": str(ROOT)}
    env_now = {k: v for k, v in os.environ.items() if "MAX_CPU_ISA" not in k}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, cwd=ROOT, env={**env_now, **env}, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _cpu_has_amx() -> bool:
    from nin.machine import cpu_flags  # not through MXNet: collected where it is missing

    return "amx_bf16" in cpu_flags("/proc/cpuinfo")


@needs("mxnet")
@pytest.mark.skipif(
    not _cpu_has_amx(),
    reason="this CPU has no AMX (no amx_bf16 in /proc/cpuinfo): oneDNN's AMX kernels "
    "cannot run here",
)
def test_mxnet_fast_step_runs_on_amx_kernels_where_the_cpu_has_them():
    """On a CPU with AMX, nin's MXNet fast step runs its bf16 convolutions on oneDNN's AMX
    kernels (and does not die of an illegal instruction)."""
    done = _mxnet_fast_step()
    assert "amx on cap left for children: None" in done.stdout and "bf16 True" in done.stdout
    assert "convolution,jit:avx512_core_amx" in done.stdout or "amx_bf16," in done.stdout


@needs("mxnet")
def test_mxnet_fast_step_says_amx_is_absent_where_the_cpu_lacks_it():
    """On a CPU without AMX (this one, or any with AMX's flags hidden), the fast step runs,
    says AMX is absent, raises no cap and runs no AMX kernel."""
    done = _mxnet_fast_step(hide_amx=True)
    assert "amx not on this CPU cap left for children: None" in done.stdout
    assert "avx512_core_amx" not in done.stdout and "amx_bf16," not in done.stdout


def _cpuinfo(tmp_path, cores_of: list[int] | None) -> str:
    """A /proc/cpuinfo whose processor i sits on core `cores_of[i]` (None: no core ids)."""
    blocks = [
        f"processor\t: {i}\nphysical id\t: 0\n"
        + (f"core id\t\t: {core}\n" if core is not None else "")
        for i, core in enumerate(cores_of or [None, None])
    ]
    path = tmp_path / "cpuinfo"
    path.write_text("\n".join(blocks) + "\n")
    return str(path)


@needs("mxnet")
@pytest.mark.parametrize(
    "cores_of, cpus, machine, environ, quota, chosen, count, words",
    [
        ([0, 1], {0, 1}, "x86_64", {}, None, "2", 2, "choice, where MXNet 1.9.1 alone takes 1"),
        ([0, 0, 1, 1], {0, 1, 2, 3}, "x86_64", {}, None, None, 2, "2 OpenMP threads (one per"),
        ([0, 1, 2, 3], {0, 1}, "x86_64", {}, None, "2", 2, "nin's choice"),  # 2 of 4 processors
        ([0, 1], {0, 1}, "x86_64", {"OMP_NUM_THREADS": "3"}, None, None, 3, "OMP_NUM_THREADS=3"),
        ([0, 1], {0, 1}, "x86_64", {"MXNET_OMP_MAX_THREADS": "1"}, None, "1", 1, "as you set"),
        ([0, 1], {0, 1}, "x86_64", {"MXNET_OMP_MAX_THREADS": "64"}, None, "64", 2, "2 OpenMP"),
        ([0, 1], {0, 1}, "x86_64", {"OMP_THREAD_LIMIT": "abc"}, None, "2", 2,
         "OMP_THREAD_LIMIT='abc' ignored, as OpenMP ignores it"),
        ([0, 1], {0, 1}, "x86_64", {"OMP_NUM_THREADS": " 4", "MXNET_OMP_MAX_THREADS": "1"}, None,
         "1", 4, "(OMP_NUM_THREADS=4, MXNET_OMP_MAX_THREADS=1)"),
        ([0, 1], {0, 1}, "x86_64", {"OMP_NUM_THREADS": ""}, None, "2", 2, "nin's choice"),
        ([0, 1], {0, 1}, "x86_64", {"MXNET_OMP_MAX_THREADS": ""}, None, "2", 2, "nin's choice"),
        ([0, 1, 2, 3], {0, 1, 2, 3}, "x86_64", {"OMP_THREAD_LIMIT": "3"}, None, "3", 3,
         "at most OMP_THREAD_LIMIT=3: nin's choice, where MXNet 1.9.1 alone takes 2"),
        ([0, 1, 2, 3], {0, 1, 2, 3}, "x86_64", {"OMP_THREAD_LIMIT": "1"}, None, None, 1,
         "1 OpenMP thread (one per core, at most OMP_THREAD_LIMIT=1;"),
        ([0, 1, 2, 3], {0, 1, 2, 3}, "x86_64", {}, 3, "3", 3, "at most the cgroup's CPU quota, 3"),
        (None, {0, 1}, "x86_64", {}, None, None, 1, "MXNet on its own 1 OpenMP thread ("),
        ([0, 1, 2, 3], {0, 1, 2, 3}, "aarch64", {}, None, None, 4, "one per core"),
    ],
    ids=["one-thread-a-core", "hyperthreads", "affinity", "omp-set", "mxnet-set",
         "mxnet-set-above-the-processors", "bad-limit-ignored", "both-set",
         "omp-empty", "mxnet-empty", "thread-limit", "thread-limit-1", "cgroup-quota",
         "no-core-ids", "arm"],
)  # fmt: skip
def test_mxnet_runs_one_thread_per_core_unless_told(
    tmp_path, cores_of, cpus, machine, environ, quota, chosen, count, words
):
    """MXNet 1.9.1 takes half the processors (two hyperthreads a core, it assumes): where a
    core has one thread, nin sets MXNet's count to the cores (within the thread limit and the
    CPU quota), and never over the caller's own count."""
    from nin.backends.mxnet import threads

    environ = dict(environ)  # choose writes into it
    given = {k: v for k, v in environ.items() if v}
    state, got, chose = threads.choose(
        environ, _cpuinfo(tmp_path, cores_of), cpus, machine, False, quota or False
    )
    assert environ.get("MXNET_OMP_MAX_THREADS") == chosen
    assert chose == (chosen is not None and "MXNET_OMP_MAX_THREADS" not in given)
    assert {k: environ[k] for k in given} == given  # the caller's own values kept
    assert got == count and words in state


@needs("mxnet")
@pytest.mark.parametrize(
    "name, value", [("OMP_NUM_THREADS", "4,2"), ("OMP_NUM_THREADS", "abc"),
                    ("OMP_NUM_THREADS", " "), ("OMP_NUM_THREADS", "\u0664"),
                    ("MXNET_OMP_MAX_THREADS", "0"), ("MXNET_OMP_MAX_THREADS", "3000000000")]
)  # fmt: skip
def test_mxnet_thread_counts_it_cannot_read_are_refused_with_the_fix(tmp_path, name, value):
    """MXNet 1.9.1 aborts the process (dmlc::ParamError) on a count that is not one whole
    number: nin refuses it first, naming the variable and what to set."""
    from nin.backends.mxnet import threads

    environ = {name: value}
    with pytest.raises(ValueError, match=rf"{name}={re.escape(repr(value))}.*set it to a number"):
        threads.choose(environ, _cpuinfo(tmp_path, [0, 1]), {0, 1}, "x86_64", False, False)
    assert environ == {name: value}


@needs("mxnet")
def test_mxnet_threads_are_mxnets_own_when_it_was_imported_first(tmp_path):
    from nin.backends.mxnet import threads

    environ: dict = {}
    state, count, chose = threads.choose(
        environ, _cpuinfo(tmp_path, [0, 1]), {0, 1}, "x86_64", True, False
    )
    assert environ == {} and count == 1 and not chose
    assert "imported before nin: import nin.backends.mxnet first" in state


@needs("mxnet")
@pytest.mark.parametrize("before", [None, ""])
def test_mxnet_threads_variable_is_put_back_as_it_was(monkeypatch, before):
    from nin.backends.mxnet import threads

    monkeypatch.setattr(threads, "CHOSE", True)
    monkeypatch.setattr(threads, "COUNT", 2)
    monkeypatch.setattr(threads, "_BEFORE", before)
    environ = {"MXNET_OMP_MAX_THREADS": "2"}
    threads.release(environ)
    assert environ.get("MXNET_OMP_MAX_THREADS") == before
    monkeypatch.setattr(threads, "CHOSE", False)  # a value nin did not set is kept
    environ = {"MXNET_OMP_MAX_THREADS": "2"}
    threads.release(environ)
    assert environ == {"MXNET_OMP_MAX_THREADS": "2"}


# a process whose Python reads a cgroup tree of the test's (sys.argv[3]) for its CPU quota,
# until nin.backends.mxnet has chosen its threads: nin's cpu_quota reads these two files
_FAKE_CGROUP = (
    "import builtins, sys\n"
    "_open = builtins.open\n"
    "_fake = {'/proc/self/cgroup': sys.argv[3] + '/self', '/sys/fs/cgroup/cpu.max': "
    "sys.argv[3] + '/cpu.max'}\n"
    "builtins.open = lambda file, *a, **k: _open(_fake.get(file, file), *a, **k)\n"
)


@needs("mxnet")
@pytest.mark.parametrize("quota", [None, 1], ids=["this-machine", "cgroup-quota-1"])
def test_mxnet_takes_nins_threads_and_leaves_pytorchs_alone(synthetic_root, tmp_path, quota):
    """In a fresh process with no thread variables: MXNet reads nin's count at its import, the
    variable is gone from the environment afterwards (children choose for themselves), the
    start line and history.json say the count, and PyTorch, imported after MXNet, keeps its
    own count (one thread per core, without a quota) where nin set MXNet's, and runs on
    MXNet's where nin left it (MXNet 1.9.1 alone sets its own count for the whole process).
    `quota`: this machine's cgroup, or a faked one allowing 1 CPU."""
    code = (
        "import os, sys\n"
        "from nin.backends import mxnet as B\n"
        "from nin.backends.mxnet import threads as T\n"
        "from nin.machine import process_cpus\n"
        "print('left', os.environ.get('MXNET_OMP_MAX_THREADS'))\n"
        "print('chose', T.CHOSE, T.COUNT, T.mxnet_default(process_cpus()))\n"
        "data = B.FashionMNIST(batch_size=8, resize=(67, 67), root=sys.argv[1])\n"
        "t = B.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1,\n"
        "              out_dir=sys.argv[2])\n"
        "t.fit(B.NiN(recipe='nin'), data)\n"
        "try:\n"
        "    import torch\n"
        "    print('torch', torch.get_num_threads())\n"
        "except ImportError:\n"
        "    pass\n"
    )
    if quota:
        (tmp_path / "self").write_text("0::/\n")
        (tmp_path / "cpu.max").write_text(f"{quota * 100000} 100000\n")
        code = _FAKE_CGROUP + code
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS", "OMP_THREAD_LIMIT")
    }
    done = subprocess.run(
        [sys.executable, "-c", code, str(synthetic_root), str(tmp_path / "run"), str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    from nin import machine
    from nin.backends.mxnet import threads

    cpus = machine.process_cpus()
    cores, default = machine.cores(cpus), threads.mxnet_default(cpus)
    chose, count, _ = out["chose"].split()
    assert out["left"] == "None"
    assert chose == str(int(count) != default)  # set where it differs from MXNet's own
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["config"]["omp_threads"] == int(count)
    started = next(line for line in done.stdout.splitlines() if line.startswith("nin: training"))
    assert f"on cpu(0), MXNet on {count} OpenMP thread" in started
    quota = quota or machine.cpu_quota()
    if cores is not None:
        assert int(count) == min(cores, quota or cores)
        if "torch" in out and quota is None:
            assert int(out["torch"]) == cores
    if "torch" in out:
        if chose == "True":  # MXNet leaves OpenMP's count alone: PyTorch's, as without MXNet
            alone = subprocess.run(
                [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                capture_output=True, text=True, env=env, timeout=300,
            )  # fmt: skip
            assert int(out["torch"]) == int(alone.stdout), alone.stderr[-2000:]
        else:  # MXNet set its count, nin's too, for the whole process
            assert int(out["torch"]) == int(count)


@needs("tensorflow")
def test_tensorflow_starts_quietly():
    """TensorFlow's start-up INFO and WARNING lines (oneDNN, CPU features, TensorRT) stay out
    of every run: the backend sets the log level before TensorFlow is imported."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-c", "from nin.backends import tensorflow as B; B.normal((1,))"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "oneDNN custom operations" not in done.stderr, done.stderr[-2000:]
    assert "cpu_feature_guard" not in done.stderr, done.stderr[-2000:]
