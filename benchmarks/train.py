"""Training and inference throughput of nin's fast paths against the chapter's code.

For each backend and size: images/s of a training step (forward, loss, backward, update)
and of inference, for nin's Trainer with its fast path (PyTorch: channels-last and bf16
autocast; TensorFlow: tf.function and a mixed bf16 policy; MXNet: hybridized, convolutions
in bf16 where the hardware has it) and for the chapter's code as written
(benchmarks/chapter_code.py), measured in the same run. Also: effective GFLOP/s from the
analytic MACs (training counted as 3 x the forward FLOPs: forward, then gradients for inputs
and for weights); its share of the peak that a bf16 and an fp32 matmul or convolution reach
on this machine in the same run (printed: the peak of the precision the step runs in; no
bf16 peak on a CPU without native bf16); the ceiling, the ratio a step running every FLOP at
the machine's peak (bf16's where there is one) would reach against the baseline measured
here; and the peak memory of nin's first training step, in a fresh process (as
`benchmarks.memory` measures it).

    python -m benchmarks.train [--backend all] [--size 224] [--batch-size 128] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from benchmarks import memory as memory_bench
from benchmarks.chapter_code import BASELINES
from nin.backends import get_backend, resolve_backends
from nin.machine import cpu_has_bf16
from nin.resources import conv_macs
from nin.spec import chapter_spec


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _paired(base, fast, steps: int, warmup: int = 2) -> tuple[float, float]:
    """Median seconds per call of `base` and `fast`, timed in alternation after warm-up
    calls, so that a slower spell of a shared machine hits both sides alike."""
    for _ in range(warmup):
        base(), fast()
    times = [(_seconds(base), _seconds(fast)) for _ in range(steps)]
    base_median, fast_median = np.median(times, axis=0)
    return float(base_median), float(fast_median)


def machine_peak(gpu: bool = False, framework: str | None = None) -> dict:
    """The machine's reachable GFLOP/s in fp32 and bf16. With PyTorch (the default where it
    is installed; oneDNN or cuBLAS/cuDNN): the faster of a large square matmul and the
    chapter's largest convolution (block 2's 5 x 5, 96 -> 256 channels at 26 x 26,
    channels-last), each its fastest of several calls. With `framework` 'tensorflow' or
    'mxnet' (or where PyTorch is missing): that framework's own measure (`_framework_peak`).
    bf16 is None on a CPU without native bf16 (`nin.machine.cpu_has_bf16`): emulated, it
    takes minutes to measure and is no peak."""
    import importlib.util

    if framework is None:
        framework = next(
            (
                f
                for f in ("torch", "tensorflow", "mxnet")
                if importlib.util.find_spec(f) is not None
            ),
            "torch",
        )
    if framework != "torch":
        return _framework_peak(framework, gpu)
    import torch

    n, device = (8192, "cuda") if gpu else (2048, "cpu")
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    conv = torch.nn.Conv2d(96, 256, 5, padding=2).to(device, memory_format=torch.channels_last)
    x = torch.randn(128, 96, 26, 26, device=device).contiguous(memory_format=torch.channels_last)
    conv_flops = 2 * 128 * 256 * 96 * 25 * 26 * 26

    def fastest(fn):
        fn()  # warm-up: kernel selection
        return min(_seconds(fn) for _ in range(5))

    peaks = {"bf16": None}
    for name, dtype in _native(gpu, (("fp32", torch.float32), ("bf16", torch.bfloat16))):
        a = torch.randn(n, n, dtype=dtype, device=device)
        b = torch.randn(n, n, dtype=dtype, device=device)
        matmul = 2 * n**3 / fastest(lambda: (a @ b, sync()))
        with torch.no_grad(), torch.autocast(device, torch.bfloat16, name == "bf16"):
            convolution = conv_flops / fastest(lambda: (conv(x), sync()))
        peaks[name] = max(matmul, convolution) / 1e9
    return peaks


def _native(gpu: bool, kinds):
    """The (name, dtype) pairs worth measuring: on a CPU, bf16 only where it is native."""
    return [k for k in kinds if k[0] != "bf16" or gpu or cpu_has_bf16()]


def step_peak(peaks: dict, bf16: bool) -> tuple[str, float]:
    """The peak of the precision a step runs in, and its name: fp32's for an fp32 step, and
    for a bf16 step where no bf16 peak was measured."""
    return ("bf16", peaks["bf16"]) if bf16 and peaks["bf16"] else ("fp32", peaks["fp32"])


def peak_text(peaks: dict) -> str:
    """The peaks, as the benchmarks print them."""
    bf16 = (
        f"{peaks['bf16']:.0f} GFLOP/s"
        if peaks["bf16"]
        else "not measured (no AVX-512 BF16 or AMX on this CPU)"
    )
    return f"bf16 {bf16}, fp32 {peaks['fp32']:.0f} GFLOP/s"


def _framework_peak(framework: str, gpu: bool) -> dict:
    """fp32 and bf16 GFLOP/s in TensorFlow (a large square matmul) or MXNet (the chapter's
    block 2 convolution: its dot has no bf16 on a CPU)."""
    n = 8192 if gpu else 2048
    B = get_backend(framework)
    if framework == "tensorflow":
        import tensorflow as tf

        device = "/GPU:0" if gpu else "/CPU:0"

        def product(dtype):
            with tf.device(device):
                a = tf.cast(tf.random.normal((n, n)), dtype)
                b = tf.cast(tf.random.normal((n, n)), dtype)
            return lambda: (tf.matmul(a, b), B.synchronize())

        kinds = (("fp32", tf.float32), ("bf16", tf.bfloat16))
        flops = 2 * n**3
    else:
        import mxnet as mx
        from mxnet.contrib.amp.amp import bfloat16

        ctx = mx.gpu() if gpu else mx.cpu()

        def product(dtype):  # MXNet's dot has no bf16 on a CPU: block 2's convolution
            x, w = (
                mx.nd.amp_cast(mx.nd.random.normal(shape=shape, ctx=ctx), dtype=dtype)
                for shape in ((128, 96, 26, 26), (256, 96, 5, 5))
            )
            return lambda: (
                mx.nd.Convolution(x, w, kernel=(5, 5), pad=(2, 2), num_filter=256, no_bias=True),
                B.synchronize(),
            )

        kinds = (("fp32", "float32"), ("bf16", bfloat16))
        flops = 2 * 128 * 256 * 96 * 25 * 26 * 26
    peaks = {"bf16": None}
    for name, dtype in _native(gpu, kinds):
        fn = product(dtype)
        fn()
        peaks[name] = flops / min(_seconds(fn) for _ in range(3)) / 1e9
    return peaks


def fast_trainer(
    backend: str, images: np.ndarray, labels: np.ndarray, size: int, gpu: bool = False
):
    """nin's Trainer with its fast path, prepared on the chapter's model and SGD, and one
    batch (uint8 images N x 1 x 28 x 28, resized to `size` by the loader)."""
    B = get_backend(backend)
    arrays = (images[:, 0], labels, images[:, 0], labels)
    data = B.FashionMNIST(batch_size=len(labels), resize=(size, size), arrays=arrays)
    trainer = B.Trainer(max_epochs=1, num_gpus=int(gpu), fast=True, progress=False, stuck_check=0)
    trainer.prepare(B.NiN(recipe="book", lr=0.05), data)
    return trainer, next(iter(data.train_dataloader()))


def nin_fast(backend: str, images: np.ndarray, labels: np.ndarray, size: int, gpu: bool):
    """nin's own step and inference, each waited for to its end; and whether bf16 is on."""
    sync = get_backend(backend).synchronize
    trainer, batch = fast_trainer(backend, images, labels, size, gpu)
    return (
        (lambda: (trainer.train_batch(batch), sync())),
        (lambda: (trainer.eval_batch(batch), sync())),
        trainer.bf16,
    )


def run(backends, sizes, batch_size, steps, json_out=False, gpu=False, peak_framework=None):
    for backend in backends:  # nin's backends first: their set-up (MXNet's AMX) precedes any
        get_backend(backend)  # operator, the chapter code's included
    peaks = machine_peak(gpu, peak_framework)
    top = peaks["bf16"] or peaks["fp32"]
    rng = np.random.default_rng(0)
    records = []
    for size in sizes:
        macs = conv_macs(chapter_spec(), size)
        images = rng.integers(0, 256, (batch_size, 1, size, size)).astype(np.uint8)
        labels = rng.integers(0, 10, batch_size).astype(np.int64)
        pixels = (images / 255).astype(np.float32)
        for backend in backends:
            base_train, base_infer = BASELINES[backend](
                pixels, labels.astype(np.int32 if backend == "tensorflow" else np.int64), gpu
            )
            fast_train, fast_infer, bf16 = nin_fast(backend, images, labels, size, gpu)
            t_base, t_fast = _paired(base_train, fast_train, steps)
            i_base, i_fast = _paired(base_infer, fast_infer, steps)
            # in a fresh process: here, the allocator pools that the baseline left would hide
            # the step's memory (TensorFlow's never shrink)
            peak_memory = None if gpu else memory_bench.measure(backend, size, batch_size, True)
            peak_name, peak = step_peak(peaks, bf16)
            for mode, fast, base, flops in (
                ("train", t_fast, t_base, 6 * macs),
                ("inference", i_fast, i_base, 2 * macs),
            ):
                rate, base_rate = batch_size / fast, batch_size / base
                gflops, base_gflops = rate * flops / 1e9, base_rate * flops / 1e9
                records.append(
                    {
                        "backend": backend,
                        "mode": mode,
                        "size": size,
                        "batch_size": batch_size,
                        "images_per_s": rate,
                        "baseline_images_per_s": base_rate,
                        "ratio": rate / base_rate,
                        "gflop_per_s": gflops,
                        "share_of_bf16_peak": gflops / peaks["bf16"] if peaks["bf16"] else None,
                        "share_of_fp32_peak": gflops / peaks["fp32"],
                        "baseline_share_of_fp32_peak": base_gflops / peaks["fp32"],
                        "share_of_step_peak": gflops / peak,  # the peak of its precision
                        # the ratio a step running every FLOP at the machine's peak would reach
                        "ceiling_ratio": top / base_gflops,
                        "bf16": bf16,
                        "peak_memory_bytes": peak_memory if mode == "train" else None,
                        # MXNet's OpenMP threads (nin/backends/mxnet/threads.py); else None
                        "omp_threads": getattr(
                            getattr(get_backend(backend), "threads", None), "COUNT", None
                        ),
                    }
                )
            if not json_out:
                r_t, r_i = records[-2], records[-1]
                print(
                    f"  {backend:<11}{size:>4}  train {r_t['images_per_s']:7.1f} img/s vs "
                    f"{r_t['baseline_images_per_s']:6.1f} ({r_t['ratio']:4.1f}x), "
                    f"{r_t['gflop_per_s']:6.0f} GFLOP/s = "
                    f"{100 * r_t['share_of_step_peak']:3.0f}% of {peak_name} peak "
                    f"(ceiling {r_t['ceiling_ratio']:3.1f}x); inference "
                    f"{r_i['images_per_s']:7.1f} vs {r_i['baseline_images_per_s']:6.1f} "
                    f"({r_i['ratio']:4.1f}x, ceiling {r_i['ceiling_ratio']:3.1f}x); "
                    f"{'bf16' if bf16 else 'fp32'}"
                    + (
                        f"; step peak memory {peak_memory / 2**20:,.0f} MiB"
                        if peak_memory is not None
                        else ""
                    ),
                    flush=True,
                )
    return records, peaks


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="all")
    p.add_argument("--size", type=int, nargs="+", default=[224, 96])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "gpu"],
        help="gpu: both the chapter's code and nin's on the first GPU",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    backends = resolve_backends(args.backend)
    if not args.json:
        print(
            f"machine: {platform.processor() or platform.machine()}, "
            f"batch {args.batch_size}, median of {args.steps} timed steps after 2 warm-up "
            f"steps, the chapter's code and nin's in alternation"
        )
    records, peaks = run(
        backends, args.size, args.batch_size, args.steps, args.json, args.device == "gpu"
    )
    if args.json:
        print(json.dumps(records))
    else:
        print(f"peak in this run (best of a matmul and a convolution): {peak_text(peaks)}")


if __name__ == "__main__":
    main()
