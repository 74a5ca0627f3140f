"""Training-step time of every step of a study, this checkout against another one, side by side.

One process per checkout and repetition, alternating (this, other, this, other, ...), each on the same threads:
for every variant of the study it builds the trial the engine would (`_Trial`: data, model, optimizer, recipe),
takes 2 warm-up steps, then times `--steps` steps. Printed: per variant the median ms/step of each checkout over
the repetitions and their ratio (this / other; below 1: this checkout is faster), and the ratio of the summed
step times (what a sweep of one trial per variant pays). Both checkouts read the same study file, the one of
this checkout, so only the engine differs.

    python bench/step_times.py --other ../ablate-main [--study studies/roadmap-quick.yaml] [--reps 3]
    python bench/step_times.py --json            # this checkout only, one repetition, JSON (what each process does)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(study: Path, steps: int, threads: int) -> dict[str, float]:
    """ms per training step of every variant of `study`, in this process."""
    import torch

    from ablate.config.load import load_study
    from ablate.train.engine import _Trial

    torch.set_num_threads(threads)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for v in load_study(study).variants:
            trial = _Trial(v, 0, Path(tmp) / v.id, torch.device("cpu"), None, lambda _line: None, time.perf_counter())
            trial.model.train()
            batches = iter(trial.data.train.epoch(0))
            for i in range(2):
                trial.step(*next(batches), 0, i)
            t0 = time.perf_counter()
            for i in range(steps):
                trial.step(*next(batches), 0, i + 2)
            out[v.name] = (time.perf_counter() - t0) / steps * 1e3
    return out


def _one(tree: Path, study: Path, steps: int, threads: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--json", "--study", str(study), "--steps", str(steps),
           "--threads", str(threads)]
    r = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.exit(f"step_times: the run in {tree} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", type=Path, help="another checkout of ablate to compare against")
    ap.add_argument("--study", type=Path, default=ROOT / "studies" / "roadmap-quick.yaml")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per variant (after 2 warm-up steps)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (1: as each default CPU worker)")
    ap.add_argument("--json", action="store_true", help="measure this checkout once and print JSON")
    args = ap.parse_args()
    study = args.study.resolve()
    if args.json:
        print(json.dumps(measure(study, args.steps, args.threads)))
        return
    if args.other is None:
        ap.error("--other PATH is needed to compare (or --json to measure this checkout alone)")
    trees = {"this": ROOT, "other": args.other.resolve()}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    for rep in range(args.reps):
        for label, tree in trees.items():
            runs[label].append(_one(tree, study, args.steps, args.threads))
            print(f"  rep {rep + 1}: {label} done", file=sys.stderr)
    names = list(runs["this"][0])
    med = {k: {n: statistics.median(r[n] for r in rs) for n in names} for k, rs in runs.items()}
    print(f"{study.name}: {args.steps} timed steps per variant, {args.threads} thread(s), {args.reps} alternating "
          f"reps, median ms/step; this = {ROOT}, other = {trees['other']}")
    print(f"{'variant':38s} {'this':>8s} {'other':>8s} {'this/other':>11s}")
    for n in names:
        print(f"{n[:38]:38s} {med['this'][n]:8.1f} {med['other'][n]:8.1f} {med['this'][n] / med['other'][n]:11.3f}")
    ratios = [med["this"][n] / med["other"][n] for n in names]
    total = sum(med["this"].values()) / sum(med["other"].values())
    print(f"summed step time this/other: {total:.3f}; median variant {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
