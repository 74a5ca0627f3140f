"""Iso-cost variants (`match:` in a study): the width multiplier that puts a network's cost on a target.

Along a width multiplier m (every stage's width and the stem's, times m) a network's cost is Q m^2 + L m:
dense convs, whose input and output both widen, are the quadratic part; the stem conv, depthwise convs and
the classifier the linear part. One forward on the meta device profiles every conv/linear layer (its
multiply-adds, or every layer's parameters); rescaled by channel counts, the profile predicts the cost of
the same network at any widths exactly (spatial sizes do not change with width). The quadratic's root gives
the first multiplier, a few predictions settle the rounded widths, and the chosen network is counted by
fvcore, which also calibrates the prediction for what it leaves out (norm layers). That count goes to the
count cache: `ablate flops` then reads the matched networks from it.

Solutions are cached too (`<cache>/match/`), readable without torch: `ablate.config.load` looks there first
and imports this module's counting side (torch, in forked workers) only for what it has not solved before.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ablate.config.net import NetConfig, make_divisible
from ablate.config.paths import match_dir

SOLVE_VERSION = 1  # bump when what a solution means changes
MAX_MULTIPLIER = 8.0  # as `scale.width`


@dataclass(frozen=True)
class Job:
    """One network to match: its fields at the paper's scale and the target."""

    net: dict[str, Any]  # NetConfig fields (JSON mode), 3 channels and 1000 classes
    metric: str  # gflops | params
    target: float  # GFLOPs or parameters
    tolerance: float
    divisor: int
    image_size: int
    # the trained network of a solution and its image size (`scale:` and the data applied): counted while the
    # worker is at it, so that `ablate flops` finds every count it needs in the cache
    train_of: Callable[[NetConfig], tuple[NetConfig, int]] | None = field(default=None, compare=False)

    def key(self) -> str:
        from .counts import COUNT_VERSION

        blob = {k: getattr(self, k) for k in ("net", "metric", "target", "tolerance", "divisor", "image_size")}
        blob["v"] = (SOLVE_VERSION, COUNT_VERSION)  # a solution is only as good as the counts it was solved on
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Solution:
    multiplier: float
    dims: list[int]
    stem_width: int | None
    achieved: float  # the cost of the rounded network (GFLOPs or parameters)
    error: str | None = None  # why no network within tolerance exists

    def apply(self, net: NetConfig) -> NetConfig:
        update: dict[str, Any] = {"dims": tuple(self.dims)}
        if net.stem_width is not None:
            update["stem_width"] = self.stem_width
        return NetConfig.model_validate({**net.model_dump(), **update})


def width_divisor(net: NetConfig, divisor: int) -> int:
    """The smallest multiple of `divisor` every width may be: the hidden width (width x expansion) must be
    whole, and a grouped spatial conv's groups must divide the channels it sees."""
    d = divisor
    while True:
        hidden = d * net.expansion
        ok = hidden == int(hidden) and hidden >= 1
        if ok and isinstance(net.groups, int):
            ok = int(hidden) % net.groups == 0 if net.spatial_conv == "middle" else d % net.groups == 0
        if ok:
            return d
        d += divisor


def scaled_widths(net: NetConfig, m: float, divisor: int) -> NetConfig:
    """`net` with every width times `m`, rounded to a multiple of `divisor` (at least `divisor`)."""

    update: dict[str, Any] = {"dims": tuple(make_divisible(d * m, divisor) for d in net.dims)}
    if net.stem_width is not None:
        update["stem_width"] = make_divisible(net.stem_width * m, divisor)
    return NetConfig.model_validate({**net.model_dump(), **update})


# ---------------------------------------------------------------- cache (no torch)


def _cache_path(key: str) -> Path:
    return match_dir() / f"{key}.json"


def cached(job: Job) -> Solution | None:
    try:
        return Solution(**json.loads(_cache_path(job.key()).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _remember(job: Job, sol: Solution) -> None:
    path = _cache_path(job.key())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(sol)))
        tmp.replace(path)
    except OSError:
        pass


def solve_all(jobs: list[Job]) -> list[Solution]:
    """A solution per job (same order): from the cache, else solved (in two forked workers when several)."""
    from .table import pool_map

    out: dict[int, Solution] = {}
    todo = []
    for i, job in enumerate(jobs):
        hit = cached(job)
        if hit is not None:
            out[i] = hit
        else:
            todo.append((i, job))
    for i, sol in pool_map(_solve_item, todo):
        out[i] = sol
        if sol.error is None:
            _remember(jobs[i], sol)
    return [out[i] for i in range(len(jobs))]


def _solve_item(item: tuple[int, Job]) -> tuple[int, Solution]:
    i, job = item
    sol = solve(job)
    if sol.error is None and job.train_of is not None:
        _prefetch_train_count(job.train_of(sol.apply(NetConfig.model_validate(job.net))))
    return i, sol


# ---------------------------------------------------------------- the solve (torch)


def solve(job: Job) -> Solution:
    """Predict cheaply, count exactly: multipliers are chosen on a `Profile` of the network (conv/linear
    multiply-adds or parameters of every layer, exact for any widths), then the chosen network is counted by
    fvcore (the count `ablate flops` shows), which also calibrates the prediction for what it leaves out
    (norm layers). Usually one profile, a few predictions and one count."""
    base = NetConfig.model_validate(job.net)
    div = width_divisor(base, job.divisor)
    profile = Profile(base, job.metric, job.image_size)
    calib = 1.0  # counted cost / predicted cost, from the last count
    counted: dict[tuple[Any, ...], tuple[float, float]] = {}  # widths -> (multiplier, cost)
    for _ in range(3):
        m = _closest_multiplier(profile, job.target / calib, job.tolerance, div)
        if m is None:
            return _unreachable(f"needs every width x{MAX_MULTIPLIER:g} or more")
        cfg = scaled_widths(base, m, div)
        widths = (cfg.dims, cfg.stem_width)
        if widths in counted:
            break
        cost = count(cfg, job.metric, job.image_size)
        counted[widths] = (m, cost)
        if abs(cost / job.target - 1) <= job.tolerance:
            break
        calib = cost / profile.predict(cfg)
    (dims, stem), (m, cost) = min(counted.items(), key=lambda kv: abs(kv[1][1] / job.target - 1))
    if abs(cost / job.target - 1) > job.tolerance:
        narrow = profile.predict(scaled_widths(base, 0.0, div)) * calib
        if narrow > job.target:
            return _unreachable(f"even every width at its minimum ({div}) costs {_show(narrow, job.metric)}")
        return _unreachable(f"the closest network (widths x{m:.4g}, rounded to multiples of {div}) costs "
                            f"{_show(cost, job.metric)}, {100 * (cost / job.target - 1):+.1f} %; "
                            f"a smaller `divisor` or a larger `tolerance` may reach it")
    return Solution(multiplier=round(m, 4), dims=list(dims), stem_width=stem,
                    achieved=round(cost, 4) if job.metric == "gflops" else int(cost))


def _closest_multiplier(profile: Profile, target: float, tolerance: float, div: int) -> float | None:
    """The multiplier whose rounded network's predicted cost is closest to `target`: x1 when that is already
    within tolerance (a network on budget stays as written), else a few steps of the quadratic model."""
    base = profile.net
    as_is = scaled_widths(base, 1.0, div)
    quad, lin = profile.split()
    cost1 = quad + lin if as_is == base else profile.predict(as_is)
    if abs(cost1 / target - 1) <= tolerance:
        return 1.0
    m = (-lin + math.sqrt(lin ** 2 + 4 * quad * target)) / (2 * quad) if quad > 0 else target / lin
    best = (abs(cost1 / target - 1), 1.0)
    for _ in range(6):
        if m > MAX_MULTIPLIER:
            return None
        cost = profile.predict(scaled_widths(base, m, div))
        best = min(best, (abs(cost / target - 1), m))
        if abs(cost / target - 1) <= tolerance / 4:
            break
        m *= math.sqrt(target / cost)  # cost ~ m^2 near here: rounding makes the step jumps, the sqrt damps them
    return best[1]


class Profile:
    """Every conv/linear layer's multiply-adds (or every layer's parameters) of one network, from one forward
    on the meta device. `predict` rescales them to another network of the same structure and other widths
    (spatial sizes do not change with width): exact for conv and linear layers."""

    def __init__(self, net: NetConfig, metric: str, image_size: int):
        import torch
        from torch import nn

        self.net, self.metric = net, metric
        model = _meta(net)
        self.layers: dict[str, tuple[float, float, bool]] = {}  # name -> (cost, channel product, quadratic)
        if metric == "params":
            for name, m in _leaves(model):
                n = sum(p.numel() for p in m.parameters(recurse=False))
                if n:
                    self.layers[name] = (float(n), _channels(m), _quadratic(name, m))
            return
        macs: dict[str, float] = {}

        def hook(name: str):  # noqa: ANN202
            def record(m: nn.Module, _i: Any, out: torch.Tensor) -> None:
                per_out = m.in_features if isinstance(m, nn.Linear) else \
                    m.in_channels // m.groups * math.prod(m.kernel_size)
                macs[name] = macs.get(name, 0.0) + out.numel() * per_out
            return record

        keep = nn.Conv2d | nn.Linear | nn.MaxPool2d | nn.AdaptiveAvgPool2d | nn.Identity
        for name, m in _leaves(model):  # norms, activations, GRN, layer scale keep shapes and cost no MACs here:
            if not isinstance(m, keep):  # off, so the meta forward skips their slow Python meta kernels
                parent, _, attr = name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, attr, nn.Identity())
        handles = [m.register_forward_hook(hook(name)) for name, m in _leaves(model)
                   if isinstance(m, nn.Conv2d | nn.Linear)]
        with torch.no_grad():
            model.eval()(torch.zeros(1, net.in_chans, image_size, image_size, device="meta"))
        for h in handles:
            h.remove()
        layers = dict(_leaves(model))
        self.layers = {name: (v / 1e9, _channels(layers[name]), _quadratic(name, layers[name]))
                       for name, v in macs.items()}

    def predict(self, net: NetConfig) -> float:
        total = 0.0
        for name, m in _leaves(_meta(net)):
            if name in self.layers:
                cost, chans, _ = self.layers[name]
                total += cost * _channels(m) / chans
        return total

    def split(self) -> tuple[float, float]:
        """(quadratic, linear) parts of the profiled cost in the width multiplier."""
        quad = sum(c for c, _, q in self.layers.values() if q)
        return quad, sum(c for c, _, _ in self.layers.values()) - quad


def _meta(net: NetConfig) -> Any:
    from .counts import meta_net

    return meta_net(net)


def _leaves(model: Any) -> list[tuple[str, Any]]:
    return [(name, m) for name, m in model.named_modules() if not list(m.children())]


def _channels(m: Any) -> float:
    """What a layer's cost is proportional to at a fixed spatial size: in x out / groups (conv, linear), or
    its channels (norms, layer scale, GRN)."""
    from torch import nn

    if isinstance(m, nn.Conv2d):
        return m.in_channels * m.out_channels / m.groups
    if isinstance(m, nn.Linear):
        return m.in_features * m.out_features
    p = next(iter(m.parameters(recurse=False)), None)
    return float(p.shape[0]) if p is not None else 1.0


def _quadratic(name: str, m: Any) -> bool:
    """Both of a layer's channel counts widen with the multiplier: dense (or fixed-group) convs past the stem."""
    from torch import nn

    return isinstance(m, nn.Conv2d) and name != "stem.conv" and not (m.groups > 1 and m.groups == m.in_channels)


def _unreachable(why: str) -> Solution:
    return Solution(multiplier=float("nan"), dims=[], stem_width=None, achieved=float("nan"), error=why)


def _show(cost: float, metric: str) -> str:
    return f"{cost:.3f} GFLOPs" if metric == "gflops" else f"{cost / 1e6:.2f} M parameters"


def count(cfg: NetConfig, metric: str, image_size: int) -> float:
    """The exact cost at the paper's scale: fvcore GFLOPs (cached as `ablate flops`'s count), or parameters."""
    from .counts import cache_get, cache_put, count_net
    from .table import paper_job

    if metric == "params":
        return float(sum(p.numel() for p in _meta(cfg).parameters()))
    key = paper_job(cfg, image_size)[0]
    hit = cache_get(key)
    if hit is None:
        hit = count_net(cfg, image_size)
        cache_put(key, hit)
    return hit.flops / 1e9


def reference_cost(net: NetConfig, metric: str, image_size: int) -> float:
    """A network's own cost (for `match: {gflops: reference}`): from the count cache when there."""
    return count(net, metric, image_size)


def _prefetch_train_count(train: tuple[NetConfig, int]) -> None:
    from .counts import cache_get, cache_put, count_net
    from .table import net_job

    net, size = train
    key = net_job(net, size)[0]
    if cache_get(key) is None:
        cache_put(key, count_net(net, size))
