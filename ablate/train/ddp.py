"""One trial on K processes with torch DistributedDataParallel (torchrun-style, one host).

The worker that took the trial from the ledger stays the only one that talks to the ledger: it starts
K ranks (`spawn`), each runs `run_trial(..., dist=(rank, K))`; rank 0 alone writes the trial's files
and hands its metrics back through a small JSON file. gloo on CPU, NCCL with one GPU per rank on CUDA.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import tempfile
import traceback
from pathlib import Path
from typing import Any

from ablate.config.variant import Variant

from .engine import TrialFailed


class RankKilled(OSError):
    """A rank of a data-parallel trial was killed by a signal: an environment fault (the worker leaves the trial
    resumable and stops with exit code 2), not the trial's failure."""


def run_trial_ddp(variant: Variant, seed: int, trial_dir: Path, nproc: int, *, device: str | None = None,
                  threads: int | None = None) -> dict[str, Any]:
    """Like `run_trial`, on `nproc` data-parallel processes. Raises TrialFailed / RuntimeError like it."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="ablate-ddp-") as tmp:
        result = Path(tmp) / "result.json"
        try:
            mp.start_processes(_rank_main, args=(nproc, f"file://{tmp}/rendezvous", str(result), variant, seed,
                                                 str(trial_dir), device, threads),
                               nprocs=nproc, join=True, start_method="spawn")
        except mp.ProcessExitedException as e:
            if e.signal_name:  # killed from outside (the OOM killer, a scheduler): the machine's fault, not the trial's
                raise RankKilled(errno.EINTR, f"rank {e.error_index} of {nproc} was killed by {e.signal_name}",
                                 str(trial_dir)) from None
            raise
        out = json.loads(result.read_text()) if result.exists() else {"error": "rank 0 wrote no result"}
    if "metrics" in out:
        return out["metrics"]
    if out.get("trial_failed"):
        raise TrialFailed(out["error"])
    raise RuntimeError(out["error"] + ("\n" + out["traceback"] if out.get("traceback") else ""))


def _rank_main(rank: int, world: int, init: str, result: str, variant: Variant, seed: int, trial_dir: str,
               device: str | None, threads: int | None) -> None:
    import torch
    import torch.distributed as dist

    from .engine import run_trial

    cuda = (device or "").startswith("cuda") or (device is None and torch.cuda.is_available())
    dev = f"cuda:{rank % max(torch.cuda.device_count(), 1)}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=init, rank=rank, world_size=world,
                            timeout=datetime.timedelta(minutes=10))
    out: dict[str, Any]
    try:
        metrics = run_trial(variant, seed, Path(trial_dir), device=dev,
                            threads=threads or max(1, (os.cpu_count() or 1) // world), progress=False,
                            dist=(rank, world))
        out = {"metrics": {k: (v.item() if hasattr(v, "item") else v) for k, v in metrics.items()}}
    except TrialFailed as e:  # every rank sees the same (all-reduced) loss: all fail at the same step
        out = {"error": str(e), "trial_failed": True}
    except Exception as e:  # noqa: BLE001 - reported to the worker, which records it in the ledger
        out = {"error": f"{type(e).__name__}: {e}",
               "traceback": "".join(traceback.format_exception(e)[-6:])}
    finally:
        dist.destroy_process_group()
    if rank == 0:
        tmp = Path(result).with_suffix(".tmp")
        tmp.write_text(json.dumps(out))
        os.replace(tmp, result)
