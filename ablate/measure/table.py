"""FLOPs/params of every variant of a study, at the paper's scale and at the trained scale.

Counts are cached by what determines them (network + input), so a repeated `ablate flops`
answers from the cache without importing torch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

from ablate.config.plugins import sources
from ablate.config.variant import LoadedStudy, Variant

from .counts import Counts, cache_get, cache_key, cache_put


def count_jobs(variant: Variant, flops_image_size: int) -> dict[str, tuple[str, dict[str, Any], int, int]]:
    """scale -> (cache key, network spec, image size, in_chans) for the counts a variant needs."""
    data = variant.data
    size, chans, classes = data.resolved("image_size"), data.resolved("in_chans"), data.resolved("num_classes")
    if variant.timm:
        paper = {"timm": variant.timm, "num_classes": 1000, "in_chans": 3}
        train = {"timm": variant.timm, "num_classes": classes, "in_chans": chans}
        if variant.timm_scale:  # `scale:` applies to the trained model (nn/timm_scale.py)
            train["scale"] = variant.timm_scale
        plugins = sources(None, variant.timm)
        if plugins:  # a plug-in's model: its source is part of what is counted
            paper["plugins"] = train["plugins"] = plugins
        return {
            "paper": (cache_key(paper, flops_image_size, 3), paper, flops_image_size, 3),
            "train": (cache_key(train, size, chans), train, size, chans),
        }
    assert variant.net is not None and variant.train_net is not None
    return {"paper": paper_job(variant.net, flops_image_size), "train": net_job(variant.train_net, size)}


def paper_job(net: Any, image_size: int) -> tuple[str, dict[str, Any], int, int]:
    """(cache key, spec, image size, in_chans) of a network's count at the paper's scale (3 channels, 1000 classes)."""
    return net_job(net.model_copy(update={"in_chans": 3, "num_classes": 1000}), image_size)


def net_job(net: Any, image_size: int) -> tuple[str, dict[str, Any], int, int]:
    spec: dict[str, Any] = {"net": _count_fields(net)}
    plugins = sources(net, None)
    if plugins:  # a plug-in's layers: an edit of its source is counted again
        spec["plugins"] = plugins
    return cache_key(spec, image_size, net.in_chans), spec, image_size, net.in_chans


def _count_fields(net: Any) -> dict[str, Any]:
    """The fields a count depends on: stochastic depth and init change no FLOP or parameter."""
    d = net.canonical()
    d.pop("drop_path")
    d.pop("init")
    return d


def count_spec(spec: dict[str, Any], image_size: int, in_chans: int) -> Counts | None:
    """Build the network a spec names and count it. None when it cannot run at that size (timm)."""
    from .counts import count_module, count_net

    if "timm" not in spec:
        from ablate.config.net import NetConfig

        fields = {k: v for k, v in spec["net"].items() if v is not None or k != "patch_size"}  # canonical() nulls it
        return count_net(NetConfig.model_validate(fields), image_size)
    model = timm_model(spec["timm"], spec["num_classes"], spec["in_chans"], image_size, spec.get("scale"))
    if model is None:
        return None
    try:
        return count_module(model, image_size, in_chans)
    except RuntimeError:  # e.g. a window size that does not tile this image size
        return None


def _count_one(item: tuple[str, tuple[dict[str, Any], int, int, str]]) -> tuple[str, Counts | None]:
    key, (spec, image, chans, _name) = item
    return key, count_spec(spec, image, chans)


def _count_all(todo: dict[str, tuple[dict[str, Any], int, int, str]]) -> Iterator[tuple[str, Counts | None]]:
    return pool_map(_count_one, list(todo.items()))


def pool_map(fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
    """`fn` over `items` (results in any order), in two forked processes when there is enough work: tracing
    is mostly single-threaded Python, so two processes finish a roadmap in about half the time. When the parent has not
    imported torch yet (`ablate flops`), the workers are forked first and import torch/timm/fvcore
    themselves, one per core at the same time: the ~5 s import then overlaps instead of adding up.
    Otherwise they inherit the parent's imports. Only on Linux (fork); never after a torch op.
    The processes start when this is called (not when the iterator is first advanced): the caller can do
    its own work while they import. A process that dies (killed, out of memory) is a one-line StudyError,
    never a wait without end (concurrent.futures notices a dead worker; multiprocessing.Pool does not)."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    procs = min(2, os.cpu_count() or 1)
    if len(items) < 4 or procs < 2 or sys.platform != "linux":
        return map(fn, items)
    if "torch" in sys.modules:
        _import_counter()  # imported once, before the fork (and no torch op has run: fork is safe)
    pool = ProcessPoolExecutor(procs, mp_context=mp.get_context("fork"), initializer=_init_counter)
    return _results(pool, [pool.submit(fn, item) for item in items])


def _results(pool: Any, futures: list[Any]) -> Iterator[Any]:
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool

    from ablate.config.errors import StudyError

    try:
        for done in as_completed(futures):
            try:
                yield done.result()
            except BrokenProcessPool:
                raise StudyError("counting", "", "a counting process died (out of memory, or killed); counts "
                                 "finished before it are cached: run the command again") from None
    finally:  # done, failed, or the caller stopped early: no process is left behind
        pool.shutdown(wait=True, cancel_futures=True)


def _import_counter() -> None:
    import importlib

    importlib.import_module("ablate.nn.net")  # torch and timm, before the counting processes fork

    from .counts import import_fvcore

    import_fvcore()


def _init_counter() -> None:
    import torch

    _import_counter()
    torch.set_num_threads(1)  # two processes on two cores


def timm_model(name: str, num_classes: int, in_chans: int, image_size: int, scale: dict | None = None) -> Any:
    import warnings

    import timm

    from ablate.nn.timm_scale import scaled_kwargs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kwargs in ({"img_size": image_size}, {}):  # ViT-style models need the size at build time
            try:
                return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                                         **scaled_kwargs(name, scale), **kwargs)
            except (TypeError, ValueError, AssertionError, RuntimeError):
                continue
    return None


def count_study(loaded: LoadedStudy, progress: Callable[[int, int, str], None] | None = None,
                use_cache: bool = True, parallel: bool = True) -> list[dict[str, Any]]:
    """One row per variant, in study order: name, group, id, params, gflops, gflops_train, ..."""
    size = loaded.study.measure.flops_image_size
    jobs = [count_jobs(v, size) for v in loaded.variants]
    found: dict[str, Counts | None] = {}
    todo: dict[str, tuple[dict[str, Any], int, int, str]] = {}
    for v, vj in zip(loaded.variants, jobs, strict=True):
        for key, spec, image, chans in vj.values():
            hit = cache_get(key) if use_cache else None
            if hit is not None:
                found[key] = hit
            elif key not in todo:
                todo[key] = (spec, image, chans, v.name)
    results = _count_all(todo) if parallel else map(_count_one, todo.items())
    if progress and todo:
        progress(0, len(todo), "")  # while the counting processes import torch
    for n, (key, counts) in enumerate(results):
        found[key] = counts
        if counts is not None:
            cache_put(key, counts)  # each as soon as it is known: an interrupted call keeps its work
        if progress:
            progress(n + 1, len(todo), todo[key][3])
    return [_row(v, found[vj["paper"][0]], found[vj["train"][0]], size) for v, vj in zip(loaded.variants, jobs,
                                                                                           strict=True)]


def printed_tolerance(printed: float) -> float:
    """Half a unit of the printed value's last decimal (Table 10's 4.09: 0.005; Table 2's 4.3: 0.05): a count
    within it rounds to what the paper prints. (A trailing zero the YAML number drops, 4.10 -> 4.1, reads as
    one decimal less.)"""
    text = repr(float(printed))
    decimals = len(text.split(".")[1].rstrip("0")) if "." in text and "e" not in text else 0
    return 0.5 * 10 ** -decimals + 1e-9


def paper_view(row: dict[str, Any]) -> dict[str, Any]:
    """A `count_study` row as `ablate flops` shows it: the headline `gflops` is the conv + linear count (the one
    that reproduces the paper's tables), fvcore's full count (norms too) beside it as `gflops_fvcore`, and a
    `vs_paper` label where the headline does not round to the printed reference."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key == "gflops":
            out.update(gflops=row.get("gmacs_conv_linear"), gflops_fvcore=value)
        elif key != "gmacs_conv_linear":
            out[key] = value
    out["vs_paper"] = vs_paper(row.get("gmacs_conv_linear"), row.get("ref_gflops"), row.get("ref_gflops_corrected"))
    return out


def vs_paper(count: float | None, printed: float | None, corrected: float | None) -> str | None:
    """None where the count matches the printed value to its rounding; else a short label (the reference's note,
    in `ref_note`, says why)."""
    if count is None or printed is None or abs(count - printed) <= printed_tolerance(printed):
        return None
    if corrected is not None and abs(count - corrected) <= printed_tolerance(corrected):
        return f"misprint: printed {printed:g}, corrected {corrected:g}"
    return f"{count:.3f} vs printed {printed:g}"


def _row(v: Variant, paper: Counts | None, train: Counts | None, size: int) -> dict[str, Any]:
    ref = v.reference
    row: dict[str, Any] = {
        "name": v.name, "group": v.group, "id": v.id, "kind": v.kind,
        "params": paper.params if paper else None,
        "gflops": round(paper.flops / 1e9, 4) if paper else None,
        "gmacs_conv_linear": round(paper.flops_conv_linear / 1e9, 4) if paper else None,
        "params_train": train.params if train else None,
        "gflops_train": round(train.flops / 1e9, 5) if train else None,
        "activations_m": round(paper.activations / 1e6, 3) if paper else None,
        "image_size": size, "image_size_train": v.data.resolved("image_size"),
        "ref_gflops": ref.gflops if ref else None,
        "ref_gflops_corrected": ref.gflops_corrected if ref else None,
        "ref_note": ref.note if ref else None,
        "ref_params": ref.params if ref else None,
        "ref_top1": ref.top1 if ref else None,
        # `match:` solved: the width multiplier on the variant as written, and its target ("gflops 4.47")
        "width_mult": v.match["multiplier"] if v.match else None,
        "match": f"{v.match['metric']} {v.match['target']:.4g}" if v.match else None,
        # resolved fields that differ from the previous step (steps) or the first variant: {field: [old, new]}
        "changes": {k: list(ab) for k, ab in (v.changes or {}).items()},
        # what is built and how it is trained, for `flops --format json`: the network at the paper's scale (after
        # the recipe's drop_path / layer_scale) and the recipe's batch (global; micro_batch per pass) and lr
        "net": v.net.canonical() if v.net else {"timm": v.timm},
        "recipe": {"preset": v.recipe.preset, "batch_size": v.recipe.batch_size,
                   "micro_batch": v.recipe.micro_batch, "lr": v.recipe.learning_rate, "epochs": v.recipe.epochs},
    }
    if paper:
        row["breakdown"] = {k: round(x / 1e9, 4) for k, x in paper.breakdown.items()}
    return row


def count_variant(loaded: LoadedStudy, variant: Variant) -> dict[str, Any]:
    """The counts row (`count_study`) of one variant of a study, in this process (from the cache after the first
    time): what a trial records when it finishes."""
    import dataclasses

    return count_study(dataclasses.replace(loaded, variants=[variant]), parallel=False)[0]
