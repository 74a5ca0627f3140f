"""Checks of values that are only used later (by timm, at training time), made at load time so that a bad
study fails in `ablate validate` with one line instead of as a failed trial: optimizer names, RandAugment
specs, YAML booleans where numbers are meant. Torch-free (timm is imported only for a rare optimizer name)."""

from __future__ import annotations

import functools
import re
import typing
from typing import Any

# timm's usual optimizer names: checked without importing timm (2+ s); other names against timm's registry
COMMON_OPTIMIZERS = frozenset({"sgd", "nesterov", "momentum", "adam", "adamw", "adamp", "sgdp", "lamb", "lambc",
                               "lars", "larc", "nlars", "nlarc", "rmsprop", "rmsproptf", "adabelief", "lion",
                               "nadam", "nadamw", "radam", "adagrad", "adadelta", "adafactor", "adan", "madgrad",
                               "novograd", "adamax", "sgdw"})
_RA_NUMERIC = {"m": int, "n": int, "mstd": float, "mmax": int, "inc": int, "p": float}


@functools.cache
def timm_optimizers() -> frozenset[str]:
    try:
        from timm.optim import list_optimizers
    except ImportError:  # an older timm: only the common names are known
        return COMMON_OPTIMIZERS
    return frozenset(list_optimizers()) | COMMON_OPTIMIZERS


def optimizer_problem(name: str) -> str | None:
    """Why timm.optim.create_optimizer_v2 would refuse `name` (None: it is fine). timm lower-cases the name
    and reads `lookahead_<opt>` as <opt> wrapped in Lookahead."""
    opt = name.lower()
    parts = opt.split("_")
    if len(parts) == 2 and parts[0] == "lookahead":
        opt = parts[1]
    elif len(parts) > 1:
        return f"unknown optimizer '{name}' (timm takes <name> or lookahead_<name>)"
    if opt in COMMON_OPTIMIZERS or opt in timm_optimizers():
        return None
    from .errors import did_you_mean

    return f"unknown optimizer '{name}'{did_you_mean(opt, sorted(timm_optimizers()))} (timm.optim.list_optimizers())"


def randaugment_problem(spec: str) -> str | None:
    """Why timm's `rand_augment_transform` would refuse (or silently ignore part of) `spec`, e.g.
    `rand-m9-mstd0.5-inc1`; None when it is fine. Sections after `rand`: m<int> magnitude (0-30), n<int> ops
    per image (>= 1), mstd<float> magnitude noise (>= 0), mmax<int> magnitude cap, inc<0|1>, p<float>
    probability (0-1), t<name> op set."""
    parts = spec.split("-")
    if parts[0] != "rand":
        return f"'{spec}' must start with 'rand' (e.g. rand-m9-mstd0.5-inc1)"
    for section in parts[1:]:
        if section.startswith("t") and not section.startswith(tuple(_RA_NUMERIC)):
            if len(section) == 1:
                return f"'{spec}': section 't' names no op set"
            continue
        match = re.fullmatch(r"([a-z]+)(\d.*)", section)
        if not match or match.group(1) not in _RA_NUMERIC:
            return (f"'{spec}': unknown section '{section}' (valid: m<int>, n<int>, mstd<float>, mmax<int>, "
                    "inc<0|1>, p<float>, t<op set>)")
        key, text = match.groups()
        try:
            value = _RA_NUMERIC[key](text)
        except ValueError:
            return f"'{spec}': '{section}': {text!r} is not {'an integer' if _RA_NUMERIC[key] is int else 'a number'}"
        bad = {"m": not 0 <= value <= 30, "n": value < 1, "mstd": value < 0, "mmax": value < 0,
               "inc": value not in (0, 1), "p": not 0 <= value <= 1}[key]
        if bad:
            ranges = {"m": "0 to 30", "n": "at least 1", "mstd": ">= 0", "mmax": ">= 0", "inc": "0 or 1",
                      "p": "0 to 1"}
            return f"'{spec}': '{section}': {key} must be {ranges[key]} (got {text})"
    return None


def _mentions(annotation: Any, types: tuple[type, ...]) -> bool:
    if annotation in types:
        return True
    return any(_mentions(a, types) for a in typing.get_args(annotation))


def yaml_boolean_problem(value: Any, annotation: Any) -> str | None:
    """YAML reads yes/no/on/off/true/false as booleans, and pydantic would take True as 1: refuse a boolean
    (or a list holding one) where the field wants a number (and no boolean)."""
    if not _mentions(annotation, (int, float)) or _mentions(annotation, (bool, Any)):
        return None
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if isinstance(item, bool):
            return (f"expected a number, got the YAML boolean {str(item).lower()} (unquoted yes/no/on/off/true/false "
                    "are booleans in YAML)")
    return None


# ---- sizes: refuse absurd networks before anything is allocated (`--allow-large` goes past)

MAX_PARAMS = 5e9  # parameters of one network (ConvNeXt-XXL has 0.85e9)
MAX_ACTIVATION_GIB = 1024.0  # activation memory of one training step (fp32), all of the batch
MAX_VARIANTS = 2_000  # variants of one study (a grid's product): each one is trained


def estimate(net: Any, image_size: int, batch: int) -> tuple[float, float]:
    """(parameters, bytes of activations kept for the backward pass of one step of `batch` images), from the
    config alone: convolutions' weights and, per block, ~3 tensors of its input/hidden widths. Within a factor
    of about 2 of the truth for ResNets and ConvNeXts; meant to catch absurd sizes, not to plan memory."""
    sizes = net.feature_sizes(image_size)
    stem = net.stem_out
    k2 = net.kernel_size ** 2
    if net.stem == "resnet":
        params = net.in_chans * stem * 49
        floats = stem * ((image_size + 1) // 2) ** 2 * 3
    else:
        params = net.in_chans * stem * net.patch_size ** 2
        floats = stem * sizes[0] ** 2 * 2
    prev = stem
    for s, (d, n) in enumerate(zip(net.dims, net.depths, strict=False)):
        h = net.hidden(s)
        c = h if net.spatial_conv == "middle" else d
        per_group = 1 if net.groups == "depthwise" else max(1, c // int(net.groups))
        params += prev * d * (4 if net.downsample == "separate" and s else 1)  # projection / downsampling
        params += n * (2 * d * h + c * per_group * k2)
        floats += n * sizes[s] ** 2 * (2 * d + 2 * h) * 3
        prev = d
    params += prev * net.num_classes
    return float(params), float(floats) * batch * 4


def size_problem(net: Any, image_size: int, batch: int) -> str | None:
    params, act = estimate(net, image_size, batch)
    gib = act / 2 ** 30
    if params <= MAX_PARAMS and gib <= MAX_ACTIVATION_GIB:
        return None
    return (f"about {params / 1e9:.3g} billion parameters and {gib:,.0f} GiB of activations per step of "
            f"{batch} images at {image_size} px (limits: {MAX_PARAMS / 1e9:g} billion, {MAX_ACTIVATION_GIB:,.0f} "
            "GiB); --allow-large goes past the limits on hardware that takes it")


def check_sizes(loaded: Any) -> None:
    """Every variant's network, at the paper's scale (what `flops` builds) and as trained (what `run` builds),
    within the limits; else a StudyError naming the variant's field and the estimate."""
    from .errors import StudyError

    s = loaded.study
    where = "steps" if s.steps else "variants" if s.variants else "grid" if s.grid else "model"
    for v in loaded.variants:
        if v.net is None:
            continue
        at = f"{where}[{v.index}]" if where in ("steps", "variants") else where
        problem = size_problem(v.net, s.measure.flops_image_size, 1)
        if problem:
            raise StudyError(loaded.file, at, f"variant '{v.name}' at the paper's scale: {problem}")
        size = v.data.resolved("image_size")
        per_pass = min(v.recipe.micro_batch or v.recipe.batch_size, v.recipe.batch_size)  # images in one pass
        problem = size_problem(v.train_net, size, per_pass)
        if problem:
            field = ("data.image_size" if size_problem(v.train_net, size, 1) else
                     "recipe.micro_batch" if v.recipe.micro_batch else "recipe.batch_size")
            raise StudyError(loaded.file, field, f"variant '{v.name}' as trained: {problem}")
