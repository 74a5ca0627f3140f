"""A sanity floor for a study on an in-memory dataset: a linear model (multinomial logistic regression on the
pixels) trained on each seed's training images for the study's epochs and batch size, scored on the same
validation split. When every network trains below it, the proxy is not yet measuring architectures.

It costs a few seconds; the result is cached in reports/<study>/floor.json, keyed by the data, epochs, batch
size and seeds it was trained with (a report only reads and writes its own folder, never the ledger).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from ablate.config.study import Study

from .stats import t_interval
from .text import fmt, fmt_ci

IN_MEMORY = ("fashion-mnist", "cifar10", "cifar100", "synthetic")
LR = 3e-3  # Adam on standardised pixels: 80-81 % on 4,000 Fashion-MNIST images in 4 passes (1e-2: noisier)


def _key(study: Study) -> str:
    what = {"data": study.data.model_dump(mode="json", exclude={"root"}), "epochs": study.recipe.epochs,
            "batch": study.recipe.batch_size, "seeds": list(study.seeds), "lr": LR}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


def linear_top1(study: Study, seed: int) -> float:
    """Validation top-1 of a logistic regression trained on seed `seed`'s training images (no augmentation)."""
    import torch

    from ablate.config.study import Recipe
    from ablate.train.data import load_data

    torch.manual_seed(seed)
    data = load_data(study.data, Recipe(batch_size=study.recipe.batch_size), seed, "cpu")

    def flat(src: Any) -> tuple[Any, Any]:
        x = src.images.float().div(255).sub(src.mean).div(src.std)
        return x.flatten(1), src.labels

    (xt, yt), (xv, yv) = flat(data.train), flat(data.val)
    model = torch.nn.Linear(xt.shape[1], data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    batch = study.recipe.batch_size
    for _ in range(study.recipe.epochs):
        for idx in torch.randperm(len(yt), generator=gen).split(batch):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    with torch.no_grad():
        return float((model(xv).argmax(1) == yv).float().mean() * 100)


def linear_floor(study: Study, cache_dir: Path) -> dict[str, Any] | None:
    """The floor's top-1 per seed with its mean and 95 % interval (cached); None for a dataset not held in
    memory (imagefolder) or when the data cannot be read."""
    if study.data.dataset not in IN_MEMORY:
        return None
    path, key = Path(cache_dir) / "floor.json", _key(study)
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            if cached.get("key") == key:
                return cached
        except (ValueError, OSError):
            pass
    try:
        per_seed = {str(s): linear_top1(study, s) for s in study.seeds}
    except Exception as e:  # noqa: BLE001 - a report without its floor beats no report
        return {"error": f"{type(e).__name__}: {e}"}
    mean, lo, hi = t_interval(list(per_seed.values()))
    out = {"key": key, "top1": per_seed, "mean": mean, "lo": lo, "hi": hi, "epochs": study.recipe.epochs,
           "batch": study.recipe.batch_size}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return out


def floor_lines(floor: dict[str, Any] | None, best: float = math.nan) -> list[str]:
    """The report's floor sentence (none for a dataset not held in memory)."""
    if not floor:
        return []
    if "error" in floor:
        return [f"Sanity floor (a linear model on the same images) not computed: {floor['error']}."]
    seeds = len(floor["top1"])
    line = (f"Sanity floor: a logistic regression on the pixels, trained on the same training images "
            f"({floor['epochs']} epochs, batch {floor['batch']}, Adam lr {LR:g}, no augmentation) scores top-1 "
            f"{fmt(floor['mean'])}{fmt_ci(floor['lo'], floor['hi'])} (n = {seeds}) on the same validation split")
    if math.isfinite(best):
        line += ("; every network trains below it" if best < floor["mean"] else
                 f"; the highest mean top-1 ({fmt(best)}) is above it")
    return [line + "."]
