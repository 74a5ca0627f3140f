"""How `scale.depth` turns a network's blocks per stage into a proxy's.

`round` (the default): each stage's depth times the factor, rounded, at least 1. At a third of the depth it
maps both 3 and 4 blocks to 1, so a step that moves a block between stages (the roadmap's stage ratio, (3,4,6,3)
-> (3,3,9,3)) can lose its change at a stage.

`keep_steps`: per stage, the depths the study's variants use at that stage, in increasing order, each get the
rounded depth or one more block than the next smaller one, whichever is larger. Every change of depth between
two variants of the study keeps its direction at every stage, at the cost of some blocks more than the factor
asks for. The map depends on the study's variants (a variant's trained depth is read against the others'), so
it applies to steps, variants and grids, not to a search.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def rounded(depth: int, factor: float) -> int:
    """The default rule: depth x factor rounded half up, at least 1 block."""
    return max(1, math.floor(depth * factor + 0.5))


def keep_steps(depths: Iterable[Sequence[int]], factor: float) -> list[dict[int, int]]:
    """Per stage, {unscaled depth: scaled depth} over every depth list in `depths` (one per variant): strictly
    increasing in the unscaled depth, so no two depths a stage uses share a scaled depth."""
    lists = [tuple(d) for d in depths]
    stages = max((len(d) for d in lists), default=0)
    out: list[dict[int, int]] = []
    for i in range(stages):
        mapping: dict[int, int] = {}
        last = 0
        for d in sorted({d[i] for d in lists if len(d) > i}):
            last = max(rounded(d, factor), last + 1)
            mapping[d] = last
        out.append(mapping)
    return out
