"""`ablate bench`'s inference figure beside timm's benchmark.py on the same models, measured in one process with
the repetitions interleaved (this machine is shared: read the ratios, not the levels).

timm's `benchmark.py` lives in timm's repository, not in the pip wheel, so this file re-implements its inference
loop faithfully (timm 1.0, `InferenceBenchmarkRunner.run`): model in eval mode, one random batch made once
(`torch.randn`, channels_last unless --nchw), `num_warm_iter` warm-up steps, then `num_bench_iter` steps under
`torch.no_grad()` and the precision's autocast, timed as a whole with `time.perf_counter` (after
`torch.cuda.synchronize` on CUDA); samples_per_sec = steps x batch / elapsed.

Per model three figures, each the median over ROUNDS interleaved repetitions:
  ablate: ablate's bench routine (ablate.measure.bench) on the network ablate builds from the preset (with
          PyTorch's own convs, as `ablate bench` runs it),
  timm-loop/ablate-net: the timm loop on the same ablate-built network (isolates the timing routine),
  timm-loop/timm-net: the timm loop on `timm.create_model(name)` (what benchmark.py itself would measure).
Ratios ablate / timm-loop near 1 say the two routines agree; timm-net / ablate-net compares the builds
(the presets compute the same function as timm's models: tests/test_timm_map.py).

    python bench/bench_vs_timm.py [--models resnet50,convnext_tiny] [--batch 8] [--size 224] [--rounds 5]
                                  [--precision fp32] [--nchw] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

ROUTINES = ("ablate", "timm-loop/ablate-net", "timm-loop/timm-net")


def timm_loop(model, x, precision: str, dev, warm: int, iters: int) -> float:
    """timm benchmark.py's inference loop: samples per second over `iters` steps after `warm` steps."""
    import torch

    from ablate.measure.bench import autocast

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    model.eval()
    with torch.no_grad():
        for _ in range(warm):
            with autocast(dev, precision):
                model(x)
        sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            with autocast(dev, precision):
                model(x)
        sync()
        return iters * x.shape[0] / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="resnet50,convnext_tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.0, help="time budget of one repetition")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    # channels_last by default: ablate's networks run channels-last inside (nn/net.py), so timm's model gets the
    # same memory format; with NCHW input timm's resnet50 ran bf16 at about half the speed on this CPU (oneDNN
    # reorders), which is the memory format's cost, not the design's or the timing routine's
    p.add_argument("--nchw", action="store_true", help="give both NCHW input (timm benchmark.py's default)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()

    import timm
    import torch

    from ablate.config.presets import preset
    from ablate.measure.bench import default_threads, device_name, make_step, resolve_device, timed, warm_up
    from ablate.nn.kernels import plain_convs
    from ablate.nn.net import build

    dev = resolve_device(a.device)
    threads = a.threads or default_threads()
    torch.set_num_threads(threads)
    fmt = torch.contiguous_format if a.nchw and dev.type != "cuda" else torch.channels_last
    x = torch.randn(a.batch, 3, a.size, a.size, device=dev).contiguous(memory_format=fmt)
    runs = {}
    for name in a.models.split(","):
        ours = build(preset(name)).to(dev, memory_format=fmt).eval()
        theirs = timm.create_model(name, pretrained=False).to(dev, memory_format=fmt).eval()
        step = make_step(ours, "infer", a.precision, dev, a.batch, a.size, 3, 1000)
        iters = warm_up(step, dev, 2, a.seconds)
        runs[name] = (ours, theirs, step, iters)
    rates: dict[tuple[str, str], list[float]] = {}
    with plain_convs():  # PyTorch's own convs in ablate's networks, as `ablate bench` runs them
        for _ in range(a.rounds):  # interleaved: every model and routine in each round
            for name, (ours, theirs, step, iters) in runs.items():
                add = {k: rates.setdefault((name, k), []) for k in ROUTINES}
                add["ablate"].append(a.batch * iters / timed(step, dev, iters))
                add["timm-loop/ablate-net"].append(timm_loop(ours, x, a.precision, dev, 2, iters))
                add["timm-loop/timm-net"].append(timm_loop(theirs, x, a.precision, dev, 2, iters))
    print(f"device: {device_name(dev, threads)}; batch {a.batch}, {a.size} px, {a.precision}"
          f"{', channels_last' if fmt is torch.channels_last else ''}; img/s median [min-max] of {a.rounds} "
          "interleaved rounds; timm's loop re-implemented (benchmark.py is not in the timm wheel)")
    for name in runs:
        med = {k: statistics.median(v) for (n, k), v in rates.items() if n == name}
        cells = [f"{k} {med[k]:.1f} [{min(rates[name, k]):.1f}-{max(rates[name, k]):.1f}]" for k in med]
        print(f"{name}: " + "; ".join(cells))
        print(f"  ratio ablate / timm-loop (same network): {med['ablate'] / med['timm-loop/ablate-net']:.3f}; "
              f"ablate / timm-loop on timm's model: {med['ablate'] / med['timm-loop/timm-net']:.3f}")


if __name__ == "__main__":
    main()
