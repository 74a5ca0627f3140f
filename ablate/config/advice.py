"""Warnings about a valid study that would train something other than what it seems to ask: a kernel that
reaches past its feature map, an EMA whose horizon is longer than the run, a warmup as long as the run. Each is
`(field path, one line)`; `ablate validate` prints them (and still exits 0). Torch-free."""

from __future__ import annotations

from .variant import LoadedStudy, Variant

# training images of the datasets whose size is known without reading them (imagefolder: its folders)
TRAIN_IMAGES = {"fashion-mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000}


def warnings(loaded: LoadedStudy) -> list[tuple[str, str]]:
    return [*kernel_warnings(loaded), *recipe_warnings(loaded)]


def kernel_warnings(loaded: LoadedStudy) -> list[tuple[str, str]]:
    """A k x k kernel on an n x n map (padding (k-1)/2) reaches pixels only with its central (2n-1) x (2n-1)
    taps: where k > 2n - 1 the rest multiplies padding alone, so that stage trains as with a smaller kernel.
    One warning per kernel size and image size, naming the stages and the variants."""
    found: dict[tuple[int, int, str], list[Variant]] = {}
    for v in loaded.variants:
        net = v.train_net
        if net is None or net.block != "residual":
            continue
        size = v.data.resolved("image_size")
        maps = net.feature_sizes(size)
        wasted = [(s + 1, n) for s, n in enumerate(maps) if net.kernel_size > 2 * n - 1]
        if wasted:
            text = ", ".join(f"in stage {s} ({n}x{n}) its central {2 * n - 1}x{2 * n - 1}" for s, n in wasted)
            key = (net.kernel_size, size, f"{'/'.join(map(str, maps))}|{text}")
            found.setdefault(key, []).append(v)
    out = []
    for (k, size, detail), vs in found.items():
        maps, text = detail.split("|")
        out.append((_kernel_path(loaded, vs[0]), f"kernel_size {k} is larger than the feature maps at {size} px "
                    f"(stage maps {maps}): only part of it ever touches a pixel, {text}; the other taps see "
                    f"padding alone ({_names([v.name for v in vs])})"))
    return out


def _kernel_path(loaded: LoadedStudy, v: Variant) -> str:
    s = loaded.study
    if "kernel_size" in s.grid:
        return "grid.kernel_size"
    specs = s.steps or s.variants
    if specs:
        kind = "steps" if s.steps else "variants"
        given = [i for i in range(v.index + 1) if "kernel_size" in specs[i].set]
        return f"{kind}[{given[-1]}].set.kernel_size" if given else "model.kernel_size"
    return "model.kernel_size"


def train_steps(v: Variant) -> int | None:
    """Optimizer updates of one training run, where the dataset's size is known without reading it."""
    n = v.data.train_subset or TRAIN_IMAGES.get(v.data.dataset)
    if n is None:
        return None
    batch = v.recipe.batch_size
    per_epoch = n // batch if n > batch else 1  # the engine drops the last partial batch
    return v.recipe.epochs * per_epoch


def recipe_warnings(loaded: LoadedStudy) -> list[tuple[str, str]]:
    """An EMA of the weights whose horizon (1 / (1 - decay) updates) is longer than the run: its weights are
    still mostly the initial ones; a warmup as long as the run. One warning per distinct case, naming a variant."""
    found: dict[tuple[str, str], list[str]] = {}
    for v in loaded.variants:
        r, steps = v.recipe, train_steps(v)
        if r.ema is not None and steps is not None and 1 / (1 - r.ema) > steps:
            text = (f"decay {r.ema:g} averages over ~{1 / (1 - r.ema):,.0f} updates, but the run makes {steps:,} "
                    f"({r.epochs} epochs of {steps // r.epochs:,}): the EMA weights stay close to the initial "
                    f"ones; use at most {1 - 1 / max(steps, 2):.4g} (a horizon of the run) or null")
            found.setdefault(("recipe.ema", text), []).append(v.name)
        if r.warmup_epochs >= r.epochs:
            text = f"{r.warmup_epochs:g} >= epochs {r.epochs}: the learning rate never leaves warmup"
            found.setdefault(("recipe.warmup_epochs", text), []).append(v.name)
    return [(path, f"{text} ({_names(names)})") for (path, text), names in found.items()]


def _names(names: list[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
    return f"variant{'s' * (len(names) > 1)} {shown}"
