"""Runner benchmarks, each measured side by side in one run (this machine is shared: read the ratios).

1. harness overhead: one trial through the engine `ablate run` uses vs a bare PyTorch loop on the same
   model, the same batches and the same optimizer (augmentation, mixup and EMA off on both sides, so
   only the harness differs); interleaved repetitions, median img/s, ratio ablate / bare (goal >= 0.95).
2. data share: the share of a training step spent producing the batch (the quick study's augmentation on
   the in-memory tensors) for the quick roadmap's ConvNeXt step, as measured inside the real training
   loop (goal <= 5 %).
3. workers: a 12-variant small sweep with `ablate run --workers 1` and `--workers 2` (fresh ledgers),
   trials per hour and the ratio (goal >= 1.5x).

    python bench/run_bench.py [--reps 3] [--skip-workers]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def harness_vs_bare(reps: int, threads: int) -> None:
    import torch

    from ablate.config.load import load_study
    from ablate.nn.net import build
    from ablate.train.data import load_data
    from ablate.train.engine import run_trial

    torch.set_num_threads(threads)
    overrides = ["recipe.randaugment=null", "recipe.mixup=0", "recipe.cutmix=0", "recipe.random_erasing=0",
                 "recipe.crop_scale=null", "recipe.hflip=0", "recipe.label_smoothing=0", "recipe.ema=null",
                 "recipe.epochs=1", "recipe.drop_path=0", "data.dataset=synthetic", "data.train_subset=4096",
                 "data.val_subset=256"]
    loaded = load_study(ROOT / "studies" / "roadmap-quick.yaml", overrides)
    variant = next(v for v in loaded.variants if v.name.startswith("separate downsampling"))
    device = torch.device("cpu")

    def bare() -> float:
        torch.manual_seed(0)
        data = load_data(variant.data, variant.recipe, 0, device)
        model = build(variant.train_net)
        opt = torch.optim.AdamW(model.parameters(), lr=variant.recipe.learning_rate,
                                weight_decay=variant.recipe.weight_decay)
        loss_fn = torch.nn.CrossEntropyLoss()
        model.train()
        n, t0 = 0, time.perf_counter()
        for x, y in data.train.epoch(0):
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += len(x)
        return n / (time.perf_counter() - t0)

    def harness(i: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            out = run_trial(variant, 0, Path(tmp) / f"t{i}", device="cpu", threads=threads, progress=False)
        return out["train_img_per_s"]

    bare()  # warm-up (allocator, oneDNN kernels)
    a, b = [], []
    for i in range(reps):
        a.append(harness(i))
        b.append(bare())
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"1. one epoch of '{variant.name}' ({variant.train_net.dims} dims, {variant.data.resolved('image_size')} px, "
          f"batch {variant.recipe.batch_size}, {threads} threads), {reps} interleaved reps, median:")
    print(f"   ablate engine {ma:8.0f} img/s   bare loop {mb:8.0f} img/s   ratio {ma / mb:.3f}  (goal >= 0.95)")


def data_share(threads: int) -> None:
    from ablate.config.load import load_study
    from ablate.train.engine import run_trial

    loaded = load_study(ROOT / "studies" / "roadmap-quick.yaml", ["recipe.epochs=1"])
    variant = next(v for v in loaded.variants if v.name.startswith("separate downsampling"))
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        run_trial(variant, 0, Path(tmp) / "t", device="cpu", threads=threads, progress=False, log=lines.append)
    share = next(float(m.group(1)) for line in lines if (m := re.search(r"data ([\d.]+)%", line)))
    r = variant.recipe
    aug = ", ".join(name for name, on in (("crop", r.crop_scale), ("flip", r.hflip), ("RandAugment", r.randaugment),
                                          ("erasing", r.random_erasing), ("mixup", r.mixup), ("cutmix", r.cutmix))
                    if on) or "none"
    print(f"2. data share of the step ({threads} thread{'s' * (threads > 1)}), '{variant.name}', the quick study's "
          f"recipe ({aug}), Fashion-MNIST {variant.data.resolved('image_size')} px: {share:.1f} %  (goal <= 5 %)")


SWEEP = """
name: bench-workers
model: {depths: [1, 1, 1], dims: [16, 32, 64], stem: patchify, patch_size: 2, expansion: 2.0}
data: {dataset: synthetic, image_size: 16, train_subset: 4096, val_subset: 256}
recipe: {preset: classic, epochs: 2, batch_size: 64, warmup_epochs: 0, lr: 0.05}
grid: {kernel_size: [1, 3, 5, 7], activation: [relu, gelu, silu]}
"""


def workers() -> None:
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "sweep.yaml"
        study.write_text(SWEEP)
        for n in (1, 2):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ablate", "run", str(study), "--workers", str(n), "--results",
                            str(Path(tmp) / f"r{n}")], check=True, capture_output=True)
            times[n] = time.perf_counter() - start
    per_hour = {n: 12 * 3600 / t for n, t in times.items()}
    print(f"3. 12-variant sweep: 1 worker {times[1]:.0f} s ({per_hour[1]:.0f} trials/h), "
          f"2 workers {times[2]:.0f} s ({per_hour[2]:.0f} trials/h), ratio {per_hour[2] / per_hour[1]:.2f}x "
          f"(goal >= 1.5x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-workers", action="store_true")
    ap.add_argument("--only-workers", action="store_true")
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, {args.threads} threads")
    if not args.only_workers:
        harness_vs_bare(args.reps, args.threads)
        data_share(args.threads)
        if args.threads != 1:
            data_share(1)
    if not args.skip_workers:
        workers()


if __name__ == "__main__":
    main()
