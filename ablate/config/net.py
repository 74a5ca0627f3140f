"""`NetConfig`: every design decision of the ResNet -> ConvNeXt roadmap as one frozen field.

This module imports neither torch nor timm: validating a study (and answering from the
count cache) must stay fast. The builder in `ablate.nn` resolves the names to layers.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .registry import entry, names

# Names a study may use (and those plug-ins register: config/registry.py). `ablate.nn.layers` maps each to a
# constructor; a test checks that the two tables agree, so validation here never needs torch.
STEMS: tuple[str, ...] = ("resnet", "patchify")
BLOCKS: tuple[str, ...] = ("residual",)
NORMS: tuple[str, ...] = ("batch", "layer", "group", "group1", "rms")
ACTIVATIONS: tuple[str, ...] = (
    "relu", "relu6", "leaky_relu", "elu", "celu", "selu", "gelu", "gelu_tanh", "quick_gelu",
    "silu", "swish", "mish", "hard_swish", "hard_sigmoid", "sigmoid", "tanh", "prelu",
)

PositiveInt = Annotated[int, Field(gt=0)]


class NetConfig(BaseModel):
    """One network of the design space: a ResNet, a ConvNeXt, or any mix of their toggles.

    Stem -> stages of residual blocks (with a downsampling style) -> head. Field names are
    the study-file contract (docs/study-file.md is generated from their descriptions).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    depths: tuple[PositiveInt, ...] = Field(
        (3, 4, 6, 3), min_length=1, description="Blocks per stage (the stage compute ratio).")
    stem: str = Field(
        "resnet", description="`resnet`: 7x7 stride-2 conv, norm, act, 3x3 stride-2 max-pool. "
        "`patchify`: one patch_size x patch_size conv with stride patch_size, then a norm. Or a plug-in's stem.")
    stem_width: PositiveInt | None = Field(
        None, description="Channels out of the stem; null means dims[0].")
    patch_size: PositiveInt = Field(4, description="Patch size (and stride) of the patchify stem.")
    stem_norm: bool = Field(
        True, description="A norm after the stem conv. The roadmap's patchify stem is the conv alone (Liu et al. "
        "2022, Section 2.2); its norm comes with separate downsampling (Section 2.6). The isotropic ConvNeXt "
        "(Section 3.3: a 16x16 patchify stem, one stage at one width, no downsampling) has none.")
    dims: tuple[PositiveInt, ...] = Field(
        (256, 512, 1024, 2048), min_length=1, description="Residual-stream width of each stage.")
    expansion: float = Field(
        0.25, gt=0, description="Hidden width of a block = dims x expansion (0.25: bottleneck, 4: inverted).")
    groups: PositiveInt | Literal["depthwise"] = Field(
        1, description="Groups of the spatial (k x k) conv; `depthwise` = one group per channel.")
    kernel_size: PositiveInt = Field(3, description="Kernel size of the spatial conv (odd).")
    block: str = Field(
        "residual", description="The block of every stage: `residual` (ablate's one residual block, shaped by the "
        "fields here) or a block a plug-in registered (docs/plugins.md).")
    spatial_conv: Literal["middle", "first"] = Field(
        "middle", description="`middle`: 1x1, kxk, 1x1 (bottleneck). `first`: kxk, 1x1, 1x1 (moved-up depthwise).")
    activation: str = Field(
        "relu", description=f"Activation function, one of {', '.join(ACTIVATIONS)}, or a plug-in's.")
    activations: Literal["all", "one"] = Field(
        "all", description="`all`: after every conv but the last and after the residual add. "
        "`one`: a single one, after the 1x1 conv that sets the hidden width.")
    norm: str = Field("batch", description=f"Normalization layer, one of {', '.join(NORMS)}, or a plug-in's.")
    norms: Literal["all", "one"] = Field(
        "all", description="Norms inside the residual branch. `all`: after every conv. `one`: after the spatial "
        "conv only. (The projection shortcut's norm is `shortcut_norm`.)")
    shortcut_norm: bool = Field(
        True, description="A norm after the 1x1 projection conv of a shortcut (only where a block changes shape, "
        "i.e. with `downsample: block`). The paper's 'fewer norms' step keeps it: it names the block's norms only.")
    grn: bool = Field(
        False, description="Global Response Normalization (ConvNeXt V2, Woo et al. 2023) on the input of the "
        "block's last 1x1 conv (in the inverted bottleneck: after the activation on the 4x-wide features).")
    downsample: Literal["block", "separate"] = Field(
        "block", description="`block`: stride in the first block of a stage + projection shortcut. "
        "`separate`: norm + 2x2 stride-2 conv between stages, a norm after the stem and one before the classifier.")
    layer_scale: float | None = Field(
        None, gt=0, description="Initial value of the per-channel residual scale; null = off.")
    drop_path: float = Field(0.0, ge=0, lt=1, description="Stochastic depth rate (linearly increasing over blocks).")
    init: Literal["resnet", "convnext"] = Field(
        "resnet", description="Weight init as in timm: `resnet` (kaiming fan-out convs) or `convnext` (truncated "
        "normal, std 0.02, zero biases).")
    zero_init_last: bool | None = Field(
        None, description="Start every residual branch at zero (Goyal et al. 2017): the branch's last norm gets "
        "zero weight, or, when the branch ends without a norm (`norms: one`), its last conv gets zero weight and "
        "bias. null = as the `init` family does it (timm: `resnet` yes, `convnext` no).")
    in_chans: PositiveInt = Field(3, description="Input channels (set from the data when training).")
    num_classes: PositiveInt = Field(1000, description="Classifier outputs (set from the data when training).")

    @field_validator("kernel_size")
    @classmethod
    def _odd_kernel(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"must be odd (got {v}): an even kernel cannot keep the feature map centred")
        return v

    @field_validator("activation", "norm", "stem", "block")
    @classmethod
    def _known_name(cls, v: str, info: ValidationInfo) -> str:  # built-in names, then those plug-ins registered
        kind = str(info.field_name)
        built_in = {"activation": ACTIVATIONS, "norm": NORMS, "stem": STEMS, "block": BLOCKS}[kind]
        return _known(v, built_in + names(kind), kind)

    @model_validator(mode="after")
    def _consistent(self) -> NetConfig:
        if len(self.depths) != len(self.dims):
            raise FieldError("dims", f"has {len(self.dims)} stages but depths has {len(self.depths)}")
        for i, dim in enumerate(self.dims):
            hidden = dim * self.expansion
            if hidden != int(hidden) or hidden < 1:
                raise FieldError("expansion", f"{self.expansion} x dims[{i}]={dim} is not a whole number of channels")
        if isinstance(self.groups, int):
            for stage, width in self.spatial_widths():
                if width % self.groups:
                    raise FieldError("groups", f"{self.groups} does not divide the spatial conv's width {width} "
                                     f"in stage {stage + 1}")
        return self

    # Derived quantities: the builder and the validation both read them from here.
    def hidden(self, stage: int) -> int:
        return int(self.dims[stage] * self.expansion)

    @property
    def stem_out(self) -> int:
        return self.stem_width or self.dims[0]

    def stage_in(self, stage: int) -> int:
        """Channels entering a stage's first block (separate downsampling has already projected them)."""
        if self.downsample == "separate":
            return self.dims[stage]
        return self.stem_out if stage == 0 else self.dims[stage - 1]

    def spatial_widths(self) -> list[tuple[int, int]]:
        """(stage, channels) of the spatial conv of each distinct block shape."""
        out = []
        for s in range(len(self.dims)):
            if self.spatial_conv == "middle":
                out.append((s, self.hidden(s)))
            else:  # the k x k conv comes first: it sees the block's input, then the stage width
                out += [(s, self.stage_in(s)), (s, self.dims[s])]
        return out

    def feature_sizes(self, image_size: int) -> list[int]:
        """Side of each stage's feature maps (after its downsampling); 0 when the image is too small."""
        n = image_size
        if self.stem == "resnet":
            n = (n - 1) // 2 + 1  # 7x7 stride-2 conv, padding 3
            n = (n - 1) // 2 + 1  # 3x3 stride-2 max-pool, padding 1
        elif self.stem == "patchify":
            n = n // self.patch_size
        else:  # a plug-in's stem: its registered reduction (validated: the name is registered)
            n = n // entry("stem", self.stem).options["reduction"]  # type: ignore[union-attr]
        out = []
        for stage in range(len(self.dims)):
            if stage > 0:
                n = n // 2 if self.downsample == "separate" else (n - 1) // 2 + 1 if n > 0 else 0
            out.append(n)
        return out

    @property
    def zero_init(self) -> bool:
        """Whether the residual branches start at zero (`zero_init_last` resolved against `init`)."""
        return self.init == "resnet" if self.zero_init_last is None else self.zero_init_last

    def canonical(self) -> dict:
        """The fields with derived defaults filled in, so equal networks hash equally."""
        d = self.model_dump(mode="json")
        d["stem_width"] = self.stem_out
        if self.stem != "patchify":
            d["patch_size"] = None
        return d

    def identity(self) -> dict:
        """`canonical()` without the fields left at their default: what a variant id hashes. A field added
        later with a default that reproduces the old network leaves every existing id unchanged."""
        return without_defaults(self.canonical(), type(self))


def without_defaults(values: dict, model: type[BaseModel]) -> dict:
    """`values` (a JSON dump of `model`) without the keys whose value equals that field's default."""
    import json

    out = {}
    for key, value in values.items():
        field = model.model_fields.get(key)
        if field is not None and not field.is_required():
            default = field.get_default(call_default_factory=True)
            if json.dumps(value, sort_keys=True, default=str) == json.dumps(_jsonable(default), sort_keys=True,
                                                                            default=str):
                continue
        out[key] = value
    return out


def _jsonable(value: object) -> object:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


class FieldError(ValueError):
    """A validation error about one named field (used inside pydantic validators)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _known(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(unknown_name(value, allowed, what) + " (a plug-in may register more: docs/plugins.md)")
    return value


def unknown_name(value: object, allowed: list[str] | tuple[str, ...], what: str) -> str:
    """`unknown activation 'gleu' (did you mean 'gelu'?); valid: ...` — one line."""
    import difflib

    close = difflib.get_close_matches(str(value), list(allowed), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    shown = ", ".join(list(allowed)[:20]) + (", ..." if len(allowed) > 20 else "")
    return f"unknown {what} '{value}'{hint}; valid: {shown}"


def make_divisible(value: float, divisor: int) -> int:
    """A channel count near `value` that `divisor` divides, never more than 10 % below it (timm's rule: timm's own
    `make_divisible` costs its 2.5 s import, and config must stay torch-free so `ablate validate` and cached
    `ablate flops` are instant)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new
