"""How much of the CPU's arithmetic the quick proxy's training uses: achieved / peak, in one run.

Peak: fp32 matrix multiply (2048 x 2048, torch.mm) on the same intra-op threads, in multiply-adds/s.
Achieved: training multiply-adds/s of representative steps of studies/roadmap-quick.yaml, each trained
through the engine `ablate run` uses (`run_trial`: the study's data pipeline and recipe, augmentation,
mixup, EMA and all), counted as `gflops_train x 3 x train img/s`: gflops_train is fvcore's forward count
at the trained size (1 multiply-add = 1 FLOP), and forward + backward ~ 3x the forward. train img/s is
the engine's own figure (images over the epoch's training time, data included) of a trial's second epoch
(the first one warms oneDNN's primitive caches up). Peak and every step are measured interleaved
(peak, step 1, ..., step 5, peak, ...), and medians of the repetitions are reported, so a shared,
noisy machine slows both sides alike.

--procs N measures the machine the way `ablate run --workers N` uses it: N processes train the same
step at the same time, each on threads/N intra-op threads, and achieved is the sum of their rates (the peak
stays the matmul on all `threads`). On a small CPU, trials side by side use the cores better than one
trial on all of them (per-op overhead does not shrink with more threads).

    python bench/proxy_throughput.py [--reps 3] [--threads N] [--procs 1,2] [--steps 12] [--set recipe.batch_size=256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "roadmap-quick.yaml"
STEPS = ("ResNet-50 (modern recipe)", "depthwise conv", "inverting dimensions", "kernel size 7",
         "separate downsampling (ConvNeXt-T)")
LABELS = ("ResNet-50", "depthwise", "inverted", "kernel 7", "ConvNeXt-T")


def peak_macs(size: int = 2048, seconds: float = 1.0) -> float:
    """fp32 matmul multiply-adds/s (the best of a few timed runs of ~`seconds`)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)  # warm-up
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = max(best, size**3 / (time.perf_counter() - t0))
    return best


def gflops_train(variant) -> float:  # noqa: ANN001 - ablate.config.load.Variant
    from ablate.measure.counts import cache_get, cache_put
    from ablate.measure.table import count_jobs, count_spec

    key, spec, image, chans = count_jobs(variant, 224)["train"]
    counts = cache_get(key)
    if counts is None:
        counts = count_spec(spec, image, chans)
        cache_put(key, counts)
    return counts.flops / 1e9


def train_rate(variant, threads: int, tmp: Path, tag: str) -> float:  # noqa: ANN001
    """The engine's train img/s of the trial's last epoch."""
    from ablate.train.engine import run_trial

    out = run_trial(variant, 0, tmp / tag, device="cpu", threads=threads, progress=False)
    return out["train_img_per_s"]


class Procs:
    """N spawned processes (torch imported once each) that train the same trial at the same moment."""

    def __init__(self, n: int, threads: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.jobs = [ctx.Queue() for _ in range(n)]
        self.done = ctx.Queue()
        self.procs = [ctx.Process(target=_serve, args=(q, self.done, threads), daemon=True) for q in self.jobs]
        for p in self.procs:
            p.start()

    def rate(self, variant, tmp: Path, tag: str) -> float:  # noqa: ANN001
        """The summed train img/s of the N processes training `variant` side by side."""
        for i, q in enumerate(self.jobs):
            q.put((variant, str(tmp), f"{tag}-p{i}"))
        rates = [self.done.get(timeout=600) for _ in self.jobs]
        if any(isinstance(r, str) for r in rates):
            raise RuntimeError(f"a benchmark process failed: {rates}")
        return sum(rates)

    def close(self) -> None:
        for q in self.jobs:
            q.put(None)
        for p in self.procs:
            p.join(timeout=30)


def _serve(jobs, done, threads: int) -> None:  # noqa: ANN001 - multiprocessing queues
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    while (job := jobs.get()) is not None:
        variant, tmp, tag = job
        try:
            done.put(train_rate(variant, threads, Path(tmp), tag))
        except Exception as e:  # reported by the parent
            done.put(f"{type(e).__name__}: {e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (median reported)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    ap.add_argument("--procs", default="1", help="trials side by side, threads/procs threads each (as `ablate "
                    "run --workers N`), achieved = their summed rate; a list (1,2) measures each, interleaved")
    ap.add_argument("--steps", type=int, default=12, help="training steps per epoch of each timed trial")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="extra study override, e.g. recipe.batch_size=256 (repeatable)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    from ablate.config.load import load_study

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    base = load_study(STUDY, args.overrides)
    batch = base.variants[0].recipe.batch_size
    # two epochs (the second is timed) of `steps` batches each, a small val set: the study's data and recipe
    overrides = [*args.overrides, "recipe.epochs=2", "recipe.warmup_epochs=1",
                 f"data.train_subset={args.steps * batch}", "data.val_subset=256"]
    loaded = load_study(STUDY, overrides)
    variants = [next(v for v in loaded.variants if v.name == name) for name in STEPS]
    work = {label: gflops_train(v) for label, v in zip(LABELS, variants, strict=True)}
    configs = [max(1, int(n)) for n in args.procs.split(",")]
    print(f"torch {torch.__version__}, {threads} threads, {loaded.file}: batch {batch}, "
          f"{variants[0].data.resolved('image_size')} px, {args.steps} steps/epoch, "
          f"{args.reps} interleaved reps, median")
    print("convention: 1 multiply-add = 1 op; peak = fp32 2048^2 matmul multiply-adds/s; "
          "achieved = gflops_train (forward, fvcore) x 3 x train img/s")
    peaks, rates = measure_all(variants, configs, threads, args.reps)
    peak = statistics.median(peaks)
    print(f"peak: {peak / 1e9:.1f} G multiply-adds/s (median of {len(peaks)}: "
          f"{', '.join(f'{p / 1e9:.1f}' for p in peaks)})")
    for n in configs:
        report(n, threads, work, rates[n], peak)
    if len(configs) > 1:
        first, last = configs[0], configs[-1]
        ratio = statistics.median(statistics.median(rates[last][k]) / statistics.median(rates[first][k])
                                  for k in LABELS)
        print(f"median step img/s, {last} vs {first} processes: {ratio:.2f}x")


def measure_all(variants: list, configs: list[int], threads: int, reps: int) -> tuple[list[float], dict]:
    """Peak and every (configuration, step), interleaved rep by rep: (peaks, rates[n][label] lists)."""
    pools = {n: Procs(n, max(1, threads // n)) for n in configs if n > 1}
    measures = {n: pools[n].rate if n in pools else (lambda v, tmp, tag: train_rate(v, threads, tmp, tag))
                for n in configs}
    peaks: list[float] = []
    rates: dict[int, dict[str, list[float]]] = {n: {label: [] for label in LABELS} for n in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for n in configs:
            measures[n](variants[-1], Path(tmp), f"warmup-{n}")
        for r in range(reps):
            peaks.append(peak_macs())
            for n in configs:
                for label, v in zip(LABELS, variants, strict=True):
                    rates[n][label].append(measures[n](v, Path(tmp), f"{label}-{n}-{r}"))
                    print(f"  rep {r + 1}, {n} proc: {label:<11} {rates[n][label][-1]:7.0f} img/s", file=sys.stderr,
                          flush=True)
    for pool in pools.values():
        pool.close()
    return peaks, rates


def report(n: int, threads: int, work: dict[str, float], rates: dict[str, list[float]], peak: float) -> None:
    how = f"{n} processes x {max(1, threads // n)} threads side by side" if n > 1 else f"1 process, {threads} threads"
    print(f"-- {how}")
    print(f"{'step':<12}{'gflops_train':>13}{'img/s':>9}{'G mult-adds/s':>15}{'achieved/peak':>15}")
    ratios = []
    for label in LABELS:
        img_s = statistics.median(rates[label])
        achieved = work[label] * 1e9 * 3 * img_s
        ratios.append(achieved / peak)
        print(f"{label:<12}{work[label]:>13.4f}{img_s:>9.0f}{achieved / 1e9:>15.2f}{achieved / peak:>15.3f}")
    print(f"median step achieved/peak: {statistics.median(ratios):.3f}  (issue 14: >= 0.2, goal >= 0.35)")


if __name__ == "__main__":
    main()
