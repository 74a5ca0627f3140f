"""The recipe presets: the fields each `recipe.preset` fills in, and how they stretch to a study's epochs and batch.
No torch, no pydantic model: `Recipe` (config/study.py) reads them while it validates."""

from __future__ import annotations

from typing import Any

# `modern`: the paper's Table 5. `classic`: the ResNet-50 baseline as Goyal et al. 2017 ("Accurate, Large Minibatch
# SGD", Section 5.1; recalled, not re-read here) give it: linear lr scaling, decay at 30/60/80, zero-init last BN,
# no weight decay on BN/bias (timm's optimizer does that for every recipe), 5 warmup epochs above batch 256.
# torchvision's own (76.13 %): batch 256, decay every 30 epochs. Sources per choice: reference/training_recipe.yaml.
RECIPES: dict[str, dict[str, Any]] = {
    "modern": dict(epochs=300, opt="adamw", base_lr=4e-3, base_batch=4096, weight_decay=0.05, sched="cosine",
                   warmup_epochs=20, randaugment="rand-m9-mstd0.5-inc1", mixup=0.8, cutmix=1.0,
                   random_erasing=0.25, label_smoothing=0.1, drop_path=0.1, layer_scale=None, ema=0.9999),
    "classic": dict(epochs=90, opt="sgd", base_lr=0.1, base_batch=256, weight_decay=1e-4, momentum=0.9,
                    sched="step", warmup_epochs=0, decay_milestones=(30, 60, 80), randaugment=None, mixup=0.0,
                    cutmix=0.0, random_erasing=0.0, label_smoothing=0.0, drop_path=None, layer_scale=None,
                    ema=None),
}
# Goyal et al.'s gradual warmup: above its base_batch a preset warms up this long (epochs of its full schedule).
LARGE_BATCH_WARMUP: dict[str, float] = {"classic": 5}


def scaled_preset(name: str, epochs: Any, batch_size: Any = None) -> dict[str, Any]:
    """The preset's fields with its schedule (warmup, step milestones) stretched to `epochs`, so that a recipe
    shortened for a proxy keeps its shape: the classic recipe still decays at 1/3, 2/3 and 8/9 of the run,
    the modern one still warms up for the first 1/15. Values a study gives itself are used as given."""
    preset = dict(RECIPES[name])
    if isinstance(batch_size, int) and batch_size > preset["base_batch"] and name in LARGE_BATCH_WARMUP:
        preset["warmup_epochs"] = LARGE_BATCH_WARMUP[name]
    if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 and epochs != preset["epochs"]:
        f = epochs / preset["epochs"]
        preset["warmup_epochs"] = round(preset["warmup_epochs"] * f, 4)
        if "decay_milestones" in preset:
            preset["decay_milestones"] = tuple(round(m * f, 4) for m in preset["decay_milestones"])
    return preset

# `recipe.precision` (its study-file documentation)
PRECISION_HELP = ("Arithmetic of the forward passes: `bf16` = bf16 autocast (weights stay fp32; on a CPU fast only "
                  "with AMX or AVX512-BF16 units), `fp32` = none, `auto` = bf16 on CUDA (what ablate always did "
                  "there), fp32 elsewhere. Whether bf16 changes top-1 is measured by studies/proxy/bf16.yaml.")
