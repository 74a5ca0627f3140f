"""How many worker processes `ablate run` starts, and on which device each trains."""

from __future__ import annotations

import os
import sys

MAX_AUTO_WORKERS = 4  # measured on 2 cores only: a cap, so that a many-core machine does not start dozens of
# processes (each holds torch and its trial's memory) unless asked to with --workers


def default_workers(device: str | None, queued: int) -> int:
    """`ablate run`'s worker processes when --workers is not given: on a CPU, one per core (at most
    MAX_AUTO_WORKERS, and no more than the trials queued), each on its share of the intra-op threads;
    on a GPU or MPS device, 1. A small proxy's operations are too small for several threads to share
    well: two 1-thread trials side by side train 1.55x the images of one 2-thread trial on a 2-core
    CPU (bench/proxy_throughput.py --procs 1,2)."""
    if queued < 2:
        return 1
    if device is not None and not device.startswith("cpu"):
        return 1
    if device is None and not no_accelerator_here():
        import torch

        if torch.cuda.is_available() or (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            return 1
    return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS, queued))


def no_accelerator_here() -> bool:
    """True when this machine certainly has no GPU torch could train on: Linux without NVIDIA, AMD (ROCm) or
    WSL GPU device nodes. `ablate run`'s own process then never imports torch (~2.5 s before its workers
    start); where a node exists, torch is asked."""
    if not sys.platform.startswith("linux"):
        return False
    return not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg"))


def gpu_for(i: int) -> str | None:
    """One GPU per worker when there are GPUs (round robin)."""
    if no_accelerator_here():
        return None
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            return f"cuda:{i % torch.cuda.device_count()}"
    except ImportError:
        pass
    return None
