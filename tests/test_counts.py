"""`count_net` (a trace of at most two blocks per stage, extrapolated) equals fvcore on the whole network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ablate.config.load import load_study
from ablate.measure.counts import count_module, count_net
from ablate.nn.net import build

ROOT = Path(__file__).resolve().parents[1]


def _nets(study: str, *names: str) -> list:
    variants = load_study(ROOT / "studies" / study).variants
    return [v.train_net for v in variants if v.train_net is not None and (not names or v.name in names)]


@pytest.mark.parametrize("cfg", [
    *_nets("roadmap.yaml", "ResNet-50 (classic recipe)", "stage ratio", "inverting dimensions",
           "move up depthwise conv", "BN -> LN", "separate downsampling (ConvNeXt-T)"),
    *_nets("roadmap-r200.yaml")[-1:],  # ConvNeXt-B (3/3/27/3)
], ids=lambda cfg: "-".join(map(str, cfg.depths)) + f"-{cfg.stem}-{cfg.downsample}-{cfg.norm}")
def test_short_trace_counts_equal_the_full_trace(cfg) -> None:  # noqa: ANN001
    full = count_module(build(cfg, init=False), 64, cfg.in_chans)
    short = count_net(cfg, 64)
    assert short == full
    assert max(cfg.depths) > 2  # the case the shortcut is for


def test_stages_of_depth_one_and_two_are_traced_whole() -> None:
    cfg = _nets("roadmap.yaml", "separate downsampling (ConvNeXt-T)")[0]
    cfg = cfg.model_copy(update={"depths": (1, 2, 1, 2), "grn": True, "layer_scale": None})
    assert count_net(cfg, 32) == count_module(build(cfg, init=False), 32, cfg.in_chans)


def _square_or_die(n: int) -> int:
    if n == 3:
        os._exit(9)  # as an out-of-memory kill: the process is gone, no exception reaches the pool
    return n * n


@pytest.mark.skipif(not Path("/proc").exists() or (os.cpu_count() or 1) < 2,
                    reason="counting processes are forked on Linux with 2+ cores only (else it would kill pytest)")
def test_a_dead_counting_process_is_one_error_not_a_hang() -> None:
    from ablate.config.errors import StudyError
    from ablate.measure.table import pool_map

    assert sorted(pool_map(_square_or_die, [0, 1, 2, 4, 5])) == [0, 1, 4, 16, 25]  # forked, results in any order
    with pytest.raises(StudyError, match="a counting process died"):
        list(pool_map(_square_or_die, [0, 1, 2, 3, 4, 5]))
