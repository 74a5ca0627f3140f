"""What the validation set's size does to a study's spread: the same trained networks scored on the whole test
split and on the 2,000-image stratified subset a study got with `data.val_subset: 2000`.

Every finished trial of a study (its final checkpoint) is evaluated once on the full test split; its top-1 on
the subset is read off the same predictions. Per step, the std of top-1 over seeds; per change (each step vs
the one before), the std of the paired differences over shared seeds: full split vs subset, side by side,
with their ratio. Run it after the study (e.g. `ablate run studies/roadmap-quick.yaml`):

    python bench/val_split_noise.py studies/roadmap-quick.yaml [--results results] [--subset 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ablate.config.load import load_study  # noqa: E402
from ablate.config.variant import compared_with  # noqa: E402
from ablate.train.data import load_data  # noqa: E402
from ablate.train.datasets import stratified_subset  # noqa: E402
from ablate.train.engine import build_model  # noqa: E402


def correct(variant, seed: int, ckpt: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per test image: whether the trial's final network classifies it right, and the labels (in order)."""
    data = load_data(variant.data.model_copy(update={"val_subset": None}), variant.recipe, seed, "cpu")
    model = build_model(variant, data)
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["model"])
    model.eval()
    hits, labels = [], []
    with torch.inference_mode():
        for x, y in data.val.epoch(0):
            hits.append((model(x).argmax(1) == y).numpy())
            labels.append(y.numpy())
    return np.concatenate(hits), np.concatenate(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study")
    ap.add_argument("--results", default="results")
    ap.add_argument("--subset", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    loaded = load_study(args.study)
    trials = Path(args.results) / loaded.name / "trials"
    full: dict[str, dict[int, float]] = {}
    sub: dict[str, dict[int, float]] = {}
    keep = None
    for v in loaded.variants:
        for d in sorted(trials.glob(f"{v.id}-s*")):
            seed = int(d.name.rsplit("-s", 1)[1])
            if not (d / "checkpoint.pt").is_file():
                continue
            hit, y = correct(v, seed, d / "checkpoint.pt")
            keep = stratified_subset(torch.as_tensor(y), args.subset, 0).numpy() if keep is None else keep
            full.setdefault(v.id, {})[seed] = 100 * hit.mean()
            sub.setdefault(v.id, {})[seed] = 100 * hit[keep].mean()
        print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    names = {v.id: v.name for v in loaded.variants}
    ids = [v.id for v in loaded.variants]
    print(f"{loaded.name}: {sum(map(len, full.values()))} trials; test split {len(hit)} images vs a stratified "
          f"subset of {args.subset}")
    print(f"{'step':34s} {'seeds':>5s} {'sd full':>8s} {'sd sub':>8s} | {'Δ sd full':>9s} {'Δ sd sub':>9s}")
    lv_f, lv_s, ch_f, ch_s = [], [], [], []
    against = compared_with([v.group or "" for v in loaded.variants], loaded.kind)
    for i, vid in enumerate(ids):
        f, s = full.get(vid, {}), sub.get(vid, {})
        sd_f = statistics.stdev(f.values()) if len(f) > 1 else float("nan")
        sd_s = statistics.stdev(s.values()) if len(s) > 1 else float("nan")
        lv_f.append(sd_f)
        lv_s.append(sd_s)
        line = f"{names[vid][:34]:34s} {len(f):5d} {sd_f:8.2f} {sd_s:8.2f} |"
        j = against[i]
        if j is not None:
            pf, ps = full.get(ids[j], {}), sub.get(ids[j], {})
            shared = sorted(set(f) & set(pf))
            if len(shared) > 1:
                df = statistics.stdev([f[k] - pf[k] for k in shared])
                ds = statistics.stdev([s[k] - ps[k] for k in shared])
                ch_f.append(df)
                ch_s.append(ds)
                line += f" {df:9.2f} {ds:9.2f}"
        print(line)
    print(f"median sd of a step over seeds: full {np.nanmedian(lv_f):.2f} vs subset {np.nanmedian(lv_s):.2f} points "
          f"(ratio {np.nanmedian(lv_f) / np.nanmedian(lv_s):.2f})")
    print(f"median sd of a change (paired over seeds): full {np.median(ch_f):.2f} vs subset {np.median(ch_s):.2f} "
          f"points (ratio {np.median(ch_f) / np.median(ch_s):.2f}; per change, median of the ratios "
          f"{np.median(np.array(ch_f) / np.array(ch_s)):.2f})")


if __name__ == "__main__":
    main()
