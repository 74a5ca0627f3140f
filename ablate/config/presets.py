"""Presets are data: each names a `NetConfig` by what differs from its family's base.

`params` is the parameter count of the timm model of the same name (ImageNet head), the
golden number the tests hold every preset to. `top1`/`gflops` are the published figures
where a paper gives them (source in `source`).
"""

from __future__ import annotations

from typing import Any

from ablate.reference import table

from .net import NetConfig

RESNET: dict[str, Any] = dict(stem="resnet", stem_width=64, dims=(256, 512, 1024, 2048), expansion=0.25,
                              groups=1, kernel_size=3, spatial_conv="middle", activation="relu",
                              activations="all", norm="batch", norms="all", downsample="block",
                              layer_scale=None, init="resnet")
CONVNEXT: dict[str, Any] = dict(stem="patchify", stem_width=None, patch_size=4, expansion=4.0,
                                groups="depthwise", kernel_size=7, spatial_conv="first", activation="gelu",
                                activations="one", norm="layer", norms="one", downsample="separate",
                                layer_scale=1e-6, init="convnext")

# ConvNeXt V2 (Woo et al. 2023): the same network with GRN in every block and no layer scale.
CONVNEXT_V2: dict[str, Any] = {**CONVNEXT, "grn": True, "layer_scale": None}
# The isotropic ConvNeXt (Liu et al. 2022, Section 3.3): a 16x16 patchify stem without a norm, then one
# stage of blocks at one width (no downsampling). Layer scale off for S and B, on (1e-6) for L: the official
# training commands (facebookresearch/ConvNeXt, TRAINING.md) pass --layer_scale_init_value 0 for the isotropic
# S and B only; L keeps the training script's default 1e-6.
ISOTROPIC: dict[str, Any] = {**CONVNEXT, "patch_size": 16, "stem_norm": False, "layer_scale": None}

_TIMM = "timm 1.0 (random init, 1000 classes)"
_CONVNEXT_PAPER = "Liu et al. 2022, Table 1 (ImageNet-1K, 224px)"
# timm has no isotropic ConvNeXt: `params` is the count of the official code (facebookresearch/ConvNeXt,
# models/convnext_isotropic.py), which the paper rounds to 22M / 87M / 306M.
_ISOTROPIC_PAPER = "Liu et al. 2022, Table 2 (isotropic ConvNeXt, ImageNet-1K, 224px)"


def _paper(name: str, params: int) -> dict[str, Any]:
    """`params` (the golden count the built model is held to) with the paper's GFLOPs and top-1 for `name`, read
    from ablate/reference/ (Table 1 for ConvNeXt-T/S/B/L, Table 2 for the isotropic ones)."""
    if name.startswith("convnext_isotropic"):
        row, source = table("convnext_isotropic")["models"][name], _ISOTROPIC_PAPER
    else:
        row, source = table("training_recipe")["model_variants"][name], _CONVNEXT_PAPER
    return dict(params=params, gflops=row["gflops"], top1=row["top1"], source=source)



# name: (family base, overrides, reference data)
PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "resnet26": (RESNET, dict(depths=(2, 2, 2, 2)), dict(params=15_995_176)),
    "resnet50": (RESNET, dict(depths=(3, 4, 6, 3)),
                 dict(params=25_557_032, gflops=4.1, top1=76.1, source="torchvision ResNet-50 (v1.5)")),
    "resnet101": (RESNET, dict(depths=(3, 4, 23, 3)), dict(params=44_549_160)),
    "resnet152": (RESNET, dict(depths=(3, 8, 36, 3)), dict(params=60_192_808)),
    "resnet200": (RESNET, dict(depths=(3, 24, 36, 3)), dict(params=64_673_832)),
    "resnext50_32x4d": (RESNET, dict(depths=(3, 4, 6, 3), groups=32, expansion=0.5), dict(params=25_028_904)),
    "resnext101_32x4d": (RESNET, dict(depths=(3, 4, 23, 3), groups=32, expansion=0.5), dict(params=44_177_704)),
    "resnext101_32x8d": (RESNET, dict(depths=(3, 4, 23, 3), groups=32, expansion=1.0), dict(params=88_791_336)),
    "resnext101_64x4d": (RESNET, dict(depths=(3, 4, 23, 3), groups=64, expansion=1.0), dict(params=83_455_272)),
    "wide_resnet50_2": (RESNET, dict(depths=(3, 4, 6, 3), expansion=0.5), dict(params=68_883_240)),
    "wide_resnet101_2": (RESNET, dict(depths=(3, 4, 23, 3), expansion=0.5), dict(params=126_886_696)),
    "convnext_atto": (CONVNEXT, dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320)), dict(params=3_695_520)),
    "convnext_femto": (CONVNEXT, dict(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384)), dict(params=5_217_784)),
    "convnext_pico": (CONVNEXT, dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512)), dict(params=9_045_672)),
    "convnext_nano": (CONVNEXT, dict(depths=(2, 2, 8, 2), dims=(80, 160, 320, 640)), dict(params=15_593_560)),
    "convnext_tiny": (CONVNEXT, dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
                      _paper("convnext_tiny", 28_589_128)),
    "convnext_small": (CONVNEXT, dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
                       _paper("convnext_small", 50_223_688)),
    "convnext_base": (CONVNEXT, dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024)),
                      _paper("convnext_base", 88_591_464)),
    "convnext_large": (CONVNEXT, dict(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536)),
                       _paper("convnext_large", 197_767_336)),
    "convnext_xlarge": (CONVNEXT, dict(depths=(3, 3, 27, 3), dims=(256, 512, 1024, 2048)),
                        dict(params=350_196_968)),
    "convnextv2_atto": (CONVNEXT_V2, dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320)), dict(params=3_708_400)),
    "convnextv2_femto": (CONVNEXT_V2, dict(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384)), dict(params=5_233_240)),
    "convnextv2_pico": (CONVNEXT_V2, dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512)), dict(params=9_066_280)),
    "convnextv2_nano": (CONVNEXT_V2, dict(depths=(2, 2, 8, 2), dims=(80, 160, 320, 640)), dict(params=15_623_800)),
    "convnextv2_tiny": (CONVNEXT_V2, dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)), dict(params=28_635_496)),
    "convnextv2_small": (CONVNEXT_V2, dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
                         dict(params=50_318_440)),
    "convnextv2_base": (CONVNEXT_V2, dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024)),
                        dict(params=88_717_800)),
    "convnextv2_large": (CONVNEXT_V2, dict(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536)),
                         dict(params=197_956_840)),
    "convnext_isotropic_small": (ISOTROPIC, dict(depths=(18,), dims=(384,)),
                                 _paper("convnext_isotropic_small", 22_308_712)),
    "convnext_isotropic_base": (ISOTROPIC, dict(depths=(18,), dims=(768,)),
                                _paper("convnext_isotropic_base", 87_083_752)),
    "convnext_isotropic_large": (ISOTROPIC, dict(depths=(36,), dims=(1024,), layer_scale=1e-6),
                                 _paper("convnext_isotropic_large", 305_942_504)),
}


def preset_fields(name: str) -> dict[str, Any]:
    """The NetConfig fields of a preset (raises KeyError for an unknown name)."""
    base, overrides, _ = PRESETS[name]
    return {**base, **overrides}


def preset(name: str, **changes: Any) -> NetConfig:
    return NetConfig(**{**preset_fields(name), **changes})


def preset_reference(name: str) -> dict[str, Any]:
    ref = dict(PRESETS[name][2])
    ref.setdefault("source", _TIMM)
    return ref
