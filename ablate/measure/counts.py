"""FLOPs, parameters and activations of one network at one input size, counted with fvcore.

Conventions (the paper's and timm's): one fused multiply-add = one FLOP, model in eval mode,
batch of one. fvcore also counts norm layers; `flops_conv_linear` keeps conv + linear only,
the count that reproduces the paper's Table 10 to two decimals.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from ablate.config.paths import counts_dir

COUNT_VERSION = 1  # bump when what a count means changes: old cache entries are then ignored


@dataclass(frozen=True)
class Counts:
    params: int
    flops: int  # fvcore total (conv, linear, norms, matmul, pooling where fvcore has a handle)
    flops_conv_linear: int
    activations: int  # output elements of every conv and linear layer (fvcore's definition)
    image_size: int
    breakdown: dict[str, int] = field(default_factory=dict)  # stem, stage1..N, head -> FLOPs

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


def count_module(model: Any, image_size: int, in_chans: int) -> Counts:
    """Count a built `nn.Module` (eval mode, batch 1, zeros input)."""
    analysis, acts = _analyze(model, image_size, in_chans)
    by_op = analysis.by_operator()
    return Counts(params=sum(p.numel() for p in model.parameters()), flops=int(analysis.total()),
                  flops_conv_linear=int(sum(v for k, v in by_op.items() if k in _CONV_LINEAR)),
                  activations=sum(acts.values()), image_size=image_size,
                  breakdown=_breakdown(analysis.by_module(), model))


_CONV_LINEAR = ("conv", "linear", "addmm", "matmul", "bmm", "einsum")


def _analyze(model: Any, image_size: int, in_chans: int) -> tuple[Any, dict[str, int]]:
    """fvcore's analysis of one traced forward, and the output elements of every conv and linear layer by
    module name (fvcore's activation definition, gathered by hooks on the same forward)."""
    import torch
    from torch import nn

    model = model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, in_chans, image_size, image_size, device=device)
    acts: dict[str, int] = {}

    def hook(name: str) -> Any:
        def record(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            acts[name] = acts.get(name, 0) + int(output.numel())
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules()
               if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        with torch.no_grad():  # FLOPs come from shapes: no autograd graph needed (~25% faster)
            analysis = _quiet_flop_analysis(model, x)
    finally:
        for h in handles:
            h.remove()
    return analysis, acts


def count_net(cfg: Any, image_size: int) -> Counts:
    """Count an ablate network (a `NetConfig`) exactly, tracing a copy with at most two blocks per stage.

    Within a stage every block after the first has the same input and output shapes and the same layers
    (stride 1, width dim -> dim), so it has the same FLOPs and activations as the stage's second block: the
    counts of a deep stage are those of its first two blocks plus (depth - 2) times the second's. ResNet-50
    (3/4/6/3 blocks) traces 8 blocks instead of 16, ConvNeXt-B 8 instead of 36: 1.6-2.7x faster per network
    in a warm process (`match:` solves, searches); a cold `ablate flops` is mostly torch's import.
    Parameters are extrapolated the same way (a repeated block has the same parameters as the second).
    `tests/test_counts.py` holds it equal to `count_module` on the full network."""
    from ablate.nn.net import build

    short = tuple(min(d, 2) for d in cfg.depths)
    if short == tuple(cfg.depths):
        return count_module(build(cfg, init=False), image_size, cfg.in_chans)
    model = build(cfg.model_copy(update={"depths": short}), init=False)
    analysis, acts = _analyze(model, image_size, cfg.in_chans)
    by_module, by_mod_op = analysis.by_module(), analysis.by_module_and_operator()
    flops, conv_linear = int(analysis.total()), sum(v for k, v in analysis.by_operator().items() if k in _CONV_LINEAR)
    activations = sum(acts.values())
    breakdown = _breakdown(by_module, model)
    sizes = {name: p.numel() for name, p in model.named_parameters()}
    params = sum(sizes.values())
    for i, depth in enumerate(cfg.depths):
        extra = depth - short[i]
        if extra <= 0:
            continue
        block = f"stages.{i}.blocks.1"
        flops += extra * by_module.get(block, 0)
        conv_linear += extra * sum(v for k, v in by_mod_op.get(block, {}).items() if k in _CONV_LINEAR)
        activations += extra * sum(n for name, n in acts.items() if name.startswith(block + "."))
        breakdown[f"stage{i + 1}"] += extra * by_module.get(block, 0)
        params += extra * sum(n for name, n in sizes.items() if name.startswith(block + "."))
    return Counts(params=params, flops=flops, flops_conv_linear=int(conv_linear), activations=activations,
                  image_size=image_size, breakdown=breakdown)


def meta_net(cfg: Any) -> Any:
    """The network of a `NetConfig` on the meta device: its structure and parameter shapes, no memory."""
    import torch

    from ablate.nn.net import Net

    with torch.device("meta"):
        return Net(cfg)


def _breakdown(by_module: dict[str, int], model: Any) -> dict[str, int]:
    if hasattr(model, "stages") and hasattr(model, "stem"):
        out = {"stem": by_module.get("stem", 0)}
        for i in range(len(model.stages)):
            out[f"stage{i + 1}"] = by_module.get(f"stages.{i}", 0)
        out["head"] = by_module.get("", 0) - sum(out.values())  # pooling, norm, classifier
        return {k: int(v) for k, v in out.items()}
    return {"total": int(by_module.get("", 0))}


def import_fvcore() -> Any:
    """`fvcore.nn`, imported without its torch.jit deprecation warning reaching the user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        import fvcore.nn

    return fvcore.nn


def _quiet_flop_analysis(model: Any, x: Any) -> Any:
    """fvcore's FlopCountAnalysis with its TorchScript and unsupported-op chatter silenced."""
    FlopCountAnalysis = import_fvcore().FlopCountAnalysis  # noqa: N806
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation and TracerWarnings are not the user's business

        analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        analysis.total()  # trace now, inside the filter
    return analysis


# ---- cache: counts keyed by what determines them, readable without importing torch ----

def cache_key(network: dict[str, Any], image_size: int, in_chans: int) -> str:
    blob = json.dumps({"v": COUNT_VERSION, "net": network, "size": image_size, "in": in_chans}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cache_get(key: str) -> Counts | None:
    path = counts_dir() / f"{key}.json"
    try:
        return Counts(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None  # absent or unreadable: count again


def cache_put(key: str, counts: Counts) -> None:
    path = counts_dir() / f"{key}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(counts)))
        tmp.replace(path)  # atomic: concurrent counters never see half a file
    except OSError:
        pass  # a read-only home only costs speed
