"""What `run` and `worker` check before anything is queued, written or trained: the data can be read, the
device exists, TensorBoard is installed. Each failure is one `StudyError` line."""

from __future__ import annotations

from pathlib import Path

from ablate.config.errors import StudyError


def check_data(loaded) -> None:
    """Every dataset of the study can be read, before anything is written (a missing dataset is a
    one-line error, not a ledger full of failed trials)."""
    import json

    from ablate.train.sources import DataError, check_idx_dataset

    seen: set[str] = set()
    for v in loaded.variants:
        key = json.dumps(v.data.model_dump(mode="json"), sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        if v.data.dataset == "imagefolder":  # scanning ImageNet's folders takes minutes: check they exist
            root = Path(v.data.root or "")
            missing = [s for s in ("train", "val") if not v.data.root or not (root / s).is_dir()]
            if missing:
                raise StudyError(loaded.file, "data.root", f"imagefolder needs {root}/train and {root}/val "
                                 f"class folders ({root / missing[0]} is missing)")
            continue
        try:
            if v.data.dataset == "fashion-mnist":
                check_idx_dataset(v.data)  # without torch: this process need not import it
            elif v.data.dataset != "synthetic":  # (generated: nothing to read)
                from ablate.train.data import check_in_memory

                check_in_memory(v.data)
        except DataError as e:
            raise StudyError(loaded.file, e.field, str(e)) from None


def check_tensorboard(folder: Path | None) -> None:
    """--tensorboard without the package is a one-line error before anything is trained."""
    if folder is None:
        return
    from ablate.sweep.tensorboard import available

    if not available():
        raise StudyError("--tensorboard", "", "needs the tensorboard package: pip install 'ablate[tensorboard]'")
    if folder.exists() and not folder.is_dir():
        raise StudyError("--tensorboard", "", f"{folder} is not a folder")


def check_device(device: str | None) -> None:
    """A --device that cannot train is a one-line error before anything is queued or trained."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise StudyError("--device", "", f"'{device}' is not a device; valid: cpu, cuda, cuda:N, mps") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise StudyError("--device", "", f"'{device}': no CUDA GPU is available on this machine")
        if dev.index is not None and dev.index >= n:
            raise StudyError("--device", "", f"'{device}': this machine has {n} CUDA GPU(s) (cuda:0..cuda:{n - 1})")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise StudyError("--device", "", f"'{device}': MPS is not available on this machine")
    elif dev.type != "cpu":
        raise StudyError("--device", "", f"'{device}': {dev.type} devices are not supported; valid: cpu, cuda, "
                         "cuda:N, mps")
