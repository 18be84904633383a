"""The three tabs as one model: same weights in, same numbers out, layer by layer.

`compare_layers` loads one set of canonical weights into every backend, feeds the same
batch in fp32 inference mode, and reports per top-level layer the output shape and the
differences against a reference backend:

    max_abs_diff = max |out - ref|        max_rel_diff = max |out - ref| / max |ref|

(relative to the layer's largest magnitude: element-wise ratios explode where ref is ~0).
`train_parity` trains the same initial weights on the same batches with plain SGD and no
dropout in each backend and reports per-step losses and the final weights' differences
(per array ||w - w_ref|| / ||w_ref||). Rounding grows over training steps: on real
Fashion-MNIST one framework against itself in another memory layout (channels-last)
already differs by about 2e-3 after 20 steps at lr 0.05 (docs/compare.md).
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from nin import spec as _spec
from nin import weights as _weights
from nin.backends import get_backend
from nin.data import TEXT_LABELS, DataUnavailableError, load_fashion_mnist, resize_matrix
from nin.errors import ArgumentError, Message, arg
from nin.history import Board, finish_figure
from nin.recipes import RECIPES, get_recipe

__all__ = [
    "strict_fp32",
    "reference_weights",
    "input_batch",
    "compare_layers",
    "train_parity",
    "PARITY_RECIPE",
]

# the book's plain SGD with a linear class block, so that no ReLU can freeze all the scores
PARITY_RECIPE = replace(RECIPES["book"], name="parity", class_block_relu="none", lr=0.05)


ONNXRUNTIME = "onnxruntime"  # a fourth column of `compare_layers`: inference only


def strict_fp32(backend: str) -> None:
    """Turn off TF32 and reduced-precision shortcuts, for numbers that can be compared."""
    get_backend(backend).strict_fp32()


def reference_weights(backend: str, spec: _spec.NetSpec, seed: int, path=None):
    """Canonical arrays: read from `path`, or the reference backend's own initialization."""
    if path is not None:
        named, file_spec, _ = _weights.read(path)
        _weights.check(named, file_spec, spec, source=str(path))
        return named
    B = get_backend(backend)
    B.set_seed(seed)
    model = B.NiN(spec=spec, recipe=PARITY_RECIPE)
    return _weights.export_arrays(backend, model.net, spec)


def input_batch(size: int, batch_size: int, seed: int, root=None):
    """(NCHW float32 batch, labels or None): Fashion-MNIST test images already on disk,
    resized with the shared bilinear matrix. Random pixels only when no folder was named
    (root=, NIN_DATA_DIR) and the default one has no copy; a named folder without the files,
    or a corrupt file, is refused as training refuses it."""
    try:
        _, _, x, y = load_fashion_mnist(root, download_missing=False)
    except DataUnavailableError:
        if root is not None or os.environ.get("NIN_DATA_DIR"):
            raise
        rng = np.random.default_rng(seed)
        return rng.random((batch_size, 1, size, size), dtype=np.float32), None
    if batch_size > len(y):
        raise ArgumentError(
            "the test split has {n} images; {batch_size} must be at most that, got {got}",
            n=len(y),
            batch_size=arg("batch_size"),
            got=batch_size,
        )
    idx = np.random.default_rng(seed).choice(len(y), batch_size, replace=False)
    r = resize_matrix(28, size)
    images = r @ (x[idx].astype(np.float32) / 255) @ r.T
    return images[:, None].astype(np.float32), y[idx]


def compare_layers(
    backends, spec, size=224, batch_size=4, seed=0, weights_path=None, reference="torch", root=None
) -> dict:
    """Per top-level layer: shapes per backend and differences against `reference`; the
    backend 'onnxruntime' runs the weights exported to ONNX (`nin.export`)."""
    backends = [reference] + [b for b in backends if b != reference]
    named = reference_weights(reference, spec, seed, weights_path)
    x, labels = input_batch(size, batch_size, seed, root)
    outputs, shapes = {}, {}
    for backend in backends:
        if backend == ONNXRUNTIME:  # the exported graph, run by ONNX Runtime (nin.export)
            from nin.export import onnx_layer_outputs

            outputs[backend] = onnx_layer_outputs(named, spec, x, size)
            shapes[backend] = [list(a.shape) for a in outputs[backend]]
            continue
        B = get_backend(backend)
        strict_fp32(backend)
        net = B.build(spec)
        _weights.load_arrays(backend, net, spec, named)
        rows = B.layer_outputs(net, _weights.input_from_nchw(x, B.LAYOUT))
        shapes[backend] = [list(a.shape) for _, a in rows]
        outputs[backend] = [_weights.activation_to_nchw(a, B.LAYOUT) for _, a in rows]
    layers = []
    for i, name in enumerate(_spec.layer_names(spec)):
        ref = outputs[reference][i]
        scale = float(np.abs(ref).max()) or 1.0
        abs_diff, rel_diff = {}, {}
        for backend in backends[1:]:
            out = outputs[backend][i].reshape(ref.shape)  # Keras' GAP drops the 1 x 1
            abs_diff[backend] = float(np.abs(out - ref).max())
            rel_diff[backend] = abs_diff[backend] / scale
        layers.append(
            {
                "name": name,
                "shape": {b: shapes[b][i] for b in backends},
                "max_abs_diff": abs_diff,
                "max_rel_diff": rel_diff,
            }
        )
    logits = {b: outputs[b][-1].tolist() for b in backends}
    return {
        "reference": reference,
        "size": size,
        "batch_size": batch_size,
        "layers": layers,
        "logits": logits,
        "predicted": {b: np.argmax(outputs[b][-1], axis=1).tolist() for b in backends},
        "labels": None if labels is None else labels.tolist(),
    }


def train_parity(
    backends,
    spec,
    size=67,
    batch_size=16,
    steps=20,
    seed=0,
    root=None,
    reference="torch",
    num_gpus=0,
    recipe=PARITY_RECIPE,
) -> dict:
    """The same weights and batches, plain SGD (or `recipe`'s, a Recipe or its name in
    RECIPES: its optimizer, lr, schedule and weight decay), dropout off: per-step losses
    per backend (on the first GPU with `num_gpus=1`, TF32 off)."""
    backends = [reference] + [b for b in backends if b != reference]
    recipe = get_recipe(recipe)  # a name in RECIPES, or a Recipe
    spec = _spec.with_dropout(spec, 0.0)
    spec = _spec.with_class_block_relu(spec, recipe.class_block_relu)
    named = reference_weights(reference, spec, seed)
    losses, final = {}, {}
    for backend in backends:
        B = get_backend(backend)
        strict_fp32(backend)
        model = B.NiN(spec=spec, recipe=recipe)
        _weights.load_arrays(backend, model.net, spec, named)
        data = B.FashionMNIST(batch_size=batch_size, resize=(size, size), root=root, seed=seed)
        trainer = B.Trainer(
            max_epochs=1,
            num_gpus=num_gpus,
            limit_train_batches=steps,
            limit_val_batches=0,
            progress=False,
            fast=False,
            stuck_check=0,
            board=Board(live=False),
        )  # one parity plot, not a board each
        history = trainer.fit(model, data)
        losses[backend] = [loss for _, loss in history.steps]
        final[backend] = _weights.export_arrays(backend, model.net, spec)
    weight_diff = {}  # per array ||w - w_ref|| / ||w_ref||, the largest over the arrays
    for backend in backends[1:]:
        weight_diff[backend] = max(
            float(
                np.linalg.norm(final[backend][k] - final[reference][k])
                / (np.linalg.norm(final[reference][k]) or 1.0)
            )
            for k in final[reference]
        )
    loss_diff = {
        b: float(np.max(np.abs(np.array(losses[b]) - np.array(losses[reference]))))
        for b in backends[1:]
    }
    return {
        "reference": reference,
        "steps": steps,
        "size": size,
        "losses": losses,
        "max_loss_diff": loss_diff,
        "max_weight_rel_diff": weight_diff,
    }


def format_layers(result: dict, wording=str) -> str:
    """The comparison as a table a reader can scan for where a difference first appears;
    `wording` says its note on the input's arguments (the CLI names its flags)."""
    ref = result["reference"]
    others = (
        list(result["max_abs_diff"])
        if "max_abs_diff" in result
        else list(result["layers"][0]["max_abs_diff"])
    )
    lines = [
        f"reference: {ref}; input {result['batch_size']} x {result['size']} x "
        f"{result['size']}; fp32 inference; rel = max|diff| / max|{ref}|"
    ]
    header = f"{'layer':<10}" + "".join(f"{b + ' shape':<22}" for b in [ref] + others)
    header += "".join(f"{b + ' abs / rel':<26}" for b in others)
    lines.append(header)
    for row in result["layers"]:
        line = f"{row['name']:<10}" + "".join(
            f"{str(tuple(row['shape'][b])):<22}" for b in [ref] + others
        )
        line += "".join(
            f"{row['max_abs_diff'][b]:.1e} / {row['max_rel_diff'][b]:.1e}".ljust(26) for b in others
        )
        lines.append(line)
    lines.append("")
    lines.append("logits of the first image:")
    w = max(11, 1 + max(len(b) for b in result["logits"]))  # a column as wide as its names
    for b, logits in result["logits"].items():
        lines.append(f"  {b:<{w}}" + " ".join(f"{v:+.4f}" for v in logits[0]))
    lines.append("predicted classes:")
    for b, pred in result["predicted"].items():
        lines.append(f"  {b:<{w}}" + ", ".join(TEXT_LABELS[p] for p in pred))
    if result["labels"] is not None:
        lines.append(f"  {'true':<{w}}" + ", ".join(TEXT_LABELS[p] for p in result["labels"]))
    else:
        note = Message(
            "  (the input was random pixels: no Fashion-MNIST copy was found; pass {root} for "
            "real images)",
            root=arg("root"),
        )
        lines.append(wording(note))
    return "\n".join(lines)


def plot_parity(result: dict, path=None):
    """The per-step losses of each backend in one plot; saved to `path`, else returned."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for i, (b, losses) in enumerate(result["losses"].items()):
        ax.plot(range(1, len(losses) + 1), losses, ["-", "--", ":"][i % 3], label=b, lw=2)
    ax.set_xlabel("SGD step")
    ax.set_ylabel("training loss")
    ax.set_title("same weights, same batches, three frameworks", fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    return finish_figure(fig, path)


# The data-parallel check's SGD lr. The book's plain SGD on a network still near chance is
# chaotic at some rates: a ReLU whose input sits at zero flips on a last-bit difference, and
# one flip moves the zero-initialized biases (MXNet's) by percents in ten steps. At 0.05 and
# 0.02 one changed summation order (two half-batch sums, or another thread count) shows it;
# at 0.01 and 0.005 it does not (docs/distributed.md).
DP_LR = 0.01


def _run_all(commands: list[list[str]], env: dict, timeout: float) -> None:
    """Start every command at once (the workers of one run) and wait for all of them; when
    one fails, or the time runs out, end every process they started (a worker whose peer is
    gone can wait for it forever)."""
    import signal
    import subprocess
    import tempfile
    import time

    logs = [tempfile.TemporaryFile() for _ in commands]
    procs = [
        subprocess.Popen(cmd, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
        for cmd, log in zip(commands, logs)
    ]
    deadline, failed = time.monotonic() + timeout, None
    try:
        while any(p.poll() is None for p in procs):
            failed = next((i for i, p in enumerate(procs) if p.returncode), None)
            if failed is not None:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"a data-parallel run did not finish in {timeout:.0f} s: "
                    f"{' '.join(commands[0])}"
                )
            time.sleep(0.1)
        if failed is None:
            failed = next((i for i, p in enumerate(procs) if p.returncode), None)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    if failed is not None:
        logs[failed].seek(0)
        tail = logs[failed].read().decode(errors="replace")[-3000:]
        raise RuntimeError(
            f"exit code {procs[failed].returncode} from {' '.join(commands[failed])}:\n{tail}"
        )


def _weight_differences(final: dict, reference: dict) -> dict:
    """`max_weight_rel_diff`: ||w - w_one|| / ||w_one|| over all the weights, the measure the
    check asserts; and the worst single array by the same measure, with its name. Arrays that
    start at zero (MXNet's and Keras' biases) hold only ten steps' updates, so one ReLU whose
    input sits at zero and flips on a last-bit difference moves them by a large fraction of
    their tiny norm, while the model as a whole agrees to 1e-6 (docs/distributed.md)."""
    names = sorted(reference)
    diff = np.sqrt(sum(np.sum((final[k] - reference[k]) ** 2.0) for k in names))
    norm = np.sqrt(sum(np.sum(reference[k] ** 2.0) for k in names))
    per = {
        k: np.linalg.norm(final[k] - reference[k]) / (np.linalg.norm(reference[k]) or 1.0)
        for k in names
    }
    worst = max(per, key=lambda k: per[k])
    return {
        "max_weight_rel_diff": float(diff / norm),
        "worst_array": worst,
        "worst_array_rel_diff": float(per[worst]),
    }


def data_parallel(
    backends,
    workers: int = 2,
    steps: int = 10,
    size: int = 67,
    batch_size: int = 16,
    seed: int = 0,
    root=None,
    machines: bool = False,
    timeout: float = 600,
) -> list[dict]:
    """Train `steps` steps on one device and on `workers` replicas (`python -m nin train
    --devices N`; with `machines`, N launches as N machines on 127.0.0.1), on the same global
    batches, in fp32, dropout off, plain SGD at `DP_LR`; one record per backend and engine:
    the largest per-step loss difference and the final weights' (`_weight_differences`).
    Every process runs one CPU thread (torchrun's setting for several workers), the one
    device too: another thread count alone changes the order of sums."""
    import json
    import sys
    import tempfile
    from pathlib import Path

    env = dict(os.environ, OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1")
    env.pop("NIN_QUICK", None)
    records = []
    with tempfile.TemporaryDirectory(prefix="nin-dp-") as tmp:

        def argv(backend, out):
            args = [sys.executable, "-m", "nin", "train", "--backend", backend, "--epochs", "1"]
            args += ["--resize", str(size), "--batch-size", str(batch_size), "--seed", str(seed)]
            args += ["--limit-train-batches", str(steps), "--limit-val-batches", "2"]
            args += ["--no-fast", "--dropout", "0", "--recipe", "book", "--lr", str(DP_LR)]
            args += ["--class-block-relu", "none", "--on-stuck", "warn", "--out", str(out)]
            return args + (["--data-dir", str(root)] if root else [])

        def result(out: Path):
            history = json.loads((out / "history.json").read_text())
            with np.load(out / "weights.npz", allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files if f[k].dtype.kind == "f"}
            return [loss for _, loss in history["steps"]], arrays, history

        for backend in backends:
            one = Path(tmp) / f"{backend}-one"
            _run_all([argv(backend, one) + ["--devices", "1"]], env, timeout)
            ref_losses, ref_weights, ref_history = result(one)
            out = Path(tmp) / f"{backend}-{workers}"
            if machines:
                from nin.distributed import free_port

                master = f"127.0.0.1:{free_port()}"
                layout = ["--devices", "1", "--nnodes", str(workers), "--master", master]
                commands = [
                    argv(backend, out) + layout + ["--node-rank", str(r)] for r in range(workers)
                ]
            else:
                commands = [argv(backend, out) + ["--devices", str(workers)]]
            _run_all(commands, env, timeout)
            losses, final, history = result(out)
            val = [h["epochs"][-1]["val_loss"] for h in (history, ref_history)]
            records.append(
                {
                    "backend": backend,
                    "workers": history["config"]["replicas"],  # what ran, not what was asked
                    "steps": steps,
                    "engine": history["config"]["engine"],
                    "max_loss_diff": float(np.max(np.abs(np.array(losses) - np.array(ref_losses)))),
                    **_weight_differences(final, ref_weights),
                    "val_loss_diff": float(abs(val[0] - val[1])),
                }
            )
    return records
