"""Complexity-bounded search (`search: {flops: [low, high], params: [low, high]}`): a sampled configuration
is counted before anything is trained, and rejected when its cost at the paper's scale is outside the window.

This is how pycls samples its design spaces (Radosavovic et al. 2019/2020: models are drawn until one falls
in the complexity regime). A candidate far outside is rejected on its conv + linear multiply-adds (a meta-
device forward, no trace); the rest are counted as `ablate flops` counts them (fvcore, cached by network),
so an accepted trial's table entry costs nothing more. Parameters need no forward at all.
"""

from __future__ import annotations

from ablate.config.variant import LoadedStudy, Variant

# Samples a search may reject in a row before it gives up on a trial (pycls draws until one fits; a window
# no configuration of the space reaches must still end).
MAX_REJECTED = 500


def out_of_bounds(loaded: LoadedStudy, v: Variant) -> str | None:
    """Why `v` is outside the study's cost window (`gflops 5.31 > 5.0`), or None when it is inside."""
    search = loaded.study.search
    if search is None or not search.bounded:
        return None
    size = loaded.study.measure.flops_image_size
    if search.params is not None:
        problem = _outside("params", cost(v, "params", size), search.params)
        if problem:
            return problem
    if search.flops is not None:
        quick = _conv_linear_gflops(v, size)
        if quick is not None:  # fvcore's total is this plus norms (a few %): far outside needs no trace
            low, high = search.flops
            if (high is not None and quick > high) or (low is not None and quick * NORM_MARGIN < low):
                return _outside("gflops", quick, search.flops)
        return _outside("gflops", cost(v, "gflops", size), search.flops)
    return None


# fvcore's total over conv + linear multiply-adds stays under this for the networks of this design space
# (norm layers: +0.3 % for ConvNeXt-T, +0.5 % for ResNet-50, +0.4 % for ResNet-200)
NORM_MARGIN = 1.1


def _conv_linear_gflops(v: Variant, image_size: int) -> float | None:
    """Conv + linear GMACs from a meta-device profile (a tenth of a second, no trace), when not counted yet."""
    from .counts import cache_get
    from .table import count_jobs

    if v.net is None or cache_get(count_jobs(v, image_size)["paper"][0]) is not None:
        return None
    from .isocost import Profile

    profile = Profile(v.net.model_copy(update={"in_chans": 3, "num_classes": 1000}), "gflops", image_size)
    return sum(profile.split())


def cost(v: Variant, metric: str, image_size: int) -> float:
    """A variant's GFLOPs or parameters at the paper's scale (3 channels, 1000 classes); counted once, cached."""
    from .counts import cache_get, cache_put
    from .table import count_jobs, count_spec

    key, spec, size, chans = count_jobs(v, image_size)["paper"]
    hit = cache_get(key)
    if hit is None and metric == "params" and v.net is not None:
        from .isocost import count

        return count(v.net.model_copy(update={"in_chans": 3, "num_classes": 1000}), "params", image_size)
    if hit is None:
        hit = count_spec(spec, size, chans)
        if hit is None:
            raise ValueError(f"'{v.name}' cannot be counted at {image_size} px")
        cache_put(key, hit)
    return hit.flops / 1e9 if metric == "gflops" else float(hit.params)


def _outside(metric: str, value: float, bounds: tuple[float | None, float | None]) -> str | None:
    low, high = bounds
    shown = f"{value:.4g}" if metric == "gflops" else f"{value / 1e6:.4g}M"
    if low is not None and value < low:
        return f"{metric} {shown} < {low:g}" if metric == "gflops" else f"params {shown} < {low / 1e6:g}M"
    if high is not None and value > high:
        return f"{metric} {shown} > {high:g}" if metric == "gflops" else f"params {shown} > {high / 1e6:g}M"
    return None
