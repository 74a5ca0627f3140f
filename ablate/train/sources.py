"""Where a study's data is and what it is, without torch: the data folders, the Fashion-MNIST files and
their IDX reader, the checks `ablate run` makes before it queues (`check_idx_dataset`: its process never
imports torch, ~2.5 s), the fingerprint of the data a trial reads, and `DataError`. `status` and `report`
check results against the data (stale results) through this module: they never import torch for it."""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import socket
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ablate.config.paths import data_dir
from ablate.config.study import DataSpec

SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
SYNTHETIC_TRAIN, SYNTHETIC_VAL = 512, 256
_SYNTHETIC_SEED = 20220110  # the synthetic *dataset* is fixed; trial seeds only pick subsets/order

class DataError(Exception):
    """Data cannot be had: one line, user-facing (the CLI prints it and exits 2); `field`: the study field it is
    about (`data` when no one field is)."""

    def __init__(self, message: str, field: str = "data"):
        super().__init__(message)
        self.field = field


def offline() -> bool:
    """ABLATE_OFFLINE=1: never try to download (tests set it; so can air-gapped users)."""
    return os.environ.get("ABLATE_OFFLINE", "").lower() in ("1", "true", "yes")


@contextlib.contextmanager
def _net_timeout(seconds: float = 30.0) -> Iterator[None]:
    """torchvision downloads without a timeout: on a network that drops packets they would hang."""
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


_IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _fashion_mnist_files(root: str | None) -> dict[str, list[Path]]:
    """The IDX files to read: only under `root` when the study names one (never another copy), else the
    system copy, the cache, or a download into the cache."""
    cache = data_dir()
    if root:
        folder = Path(root).expanduser()
        for candidate in (folder, folder / "FashionMNIST" / "raw"):  # IDX files, or torchvision's layout
            found = _find_idx(candidate)
            if found:
                return found
        if not folder.is_dir():
            raise DataError(f"fashion-mnist: data.root {folder} is not a folder (remove data.root to use the "
                            "system copy of Debian's dataset-fashion-mnist)")
        missing = [stem for stems in _IDX.values() for stem in stems
                   if not any((folder / f"{stem}{ext}").is_file() for ext in (".gz", ""))]
        raise DataError(f"fashion-mnist: data.root {folder} lacks {', '.join(missing)} (.gz or not); put the four "
                        "IDX files there, or remove data.root to use the system copy of Debian's "
                        "dataset-fashion-mnist")
    places = [*SYSTEM_DIRS, cache]
    for p in places:  # a folder of IDX files, or torchvision's layout under it
        for folder in (p, p / "FashionMNIST" / "raw"):
            found = _find_idx(folder)
            if found:
                return found
    if not offline():
        from torchvision.datasets import FashionMNIST

        with _net_timeout():
            try:
                FashionMNIST(str(cache), train=True, download=True)
                FashionMNIST(str(cache), train=False, download=True)
            except Exception:  # noqa: BLE001, S110 - offline or blocked: fall through to the message
                pass
        found = _find_idx(cache / "FashionMNIST" / "raw")
        if found:
            return found
    looked = ", ".join(str(p) for p in places)
    raise DataError(f"fashion-mnist: no IDX files in {looked} and no download; install Debian's "
                    f"dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or set data.root")


def _find_idx(folder: Path) -> dict[str, list[Path]] | None:
    def find(stem: str) -> Path | None:
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
        return None

    paths = {split: [find(s) for s in stems] for split, stems in _IDX.items()}
    if any(p is None for ps in paths.values() for p in ps):
        return None
    return paths  # type: ignore[return-value]


def cifar_datasets(name: str, root: str | None) -> tuple[Any, Any]:
    """torchvision's CIFAR-10/100 (train, val) datasets under `root` (default: `data_dir()`), downloaded when
    missing and online; a DataError that says what is missing otherwise."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    folder = Path(root).expanduser() if root else data_dir()
    splits = []
    for train in (True, False):
        ds = None
        for download in (False, not offline()):
            try:
                with _net_timeout():
                    ds = cls(str(folder), train=train, download=download)
                break
            except Exception:  # noqa: BLE001 - missing/corrupt (download=False) or offline (True)
                if not download:
                    continue
        if ds is None:
            raise DataError(f"{name}: no torchvision {cls.__name__} files in {folder} and no download; "
                            f"put the python-version archive's folder there or set data.root")
        splits.append(ds)
    return splits[0], splits[1]


def data_fingerprint(spec: DataSpec, head_bytes: int = 1 << 20) -> str:
    """A short hash of the data `load_data` reads for `spec` (cheap: no image is decoded): each file's
    name, size and first `head_bytes` bytes (fashion-mnist, cifar), the class folders and their file counts
    (imagefolder), the generator's constants (synthetic). Where the files are is not part of it: the same
    data at another root has the same fingerprint. Raises DataError when the data cannot be found."""
    import hashlib

    h = hashlib.sha256(spec.dataset.encode())
    files: list[Path] = []
    if spec.dataset == "synthetic":
        h.update(f"{_SYNTHETIC_SEED}/{SYNTHETIC_TRAIN}/{SYNTHETIC_VAL}".encode())
    elif spec.dataset == "fashion-mnist":
        files = [p for split in ("train", "val") for p in _fashion_mnist_files(spec.root)[split]]
    elif spec.dataset in ("cifar10", "cifar100"):
        from torchvision.datasets import CIFAR10, CIFAR100

        cls = CIFAR10 if spec.dataset == "cifar10" else CIFAR100
        folder = (Path(spec.root).expanduser() if spec.root else data_dir()) / cls.base_folder
        files = [folder / name for name, _ in cls.train_list + cls.test_list]
        if not all(f.is_file() for f in files):
            cifar_datasets(spec.dataset, spec.root)  # downloads them, or raises the DataError that says what is missing
    elif spec.dataset == "imagefolder":
        if not spec.root:
            raise DataError("imagefolder: set data.root to a folder holding train/ and val/ class folders")
        root = Path(spec.root).expanduser()
        for split in ("train", "val"):
            if not (root / split).is_dir():
                raise DataError(f"imagefolder: {root / split} is not a folder "
                                f"(expected {root}/{{train,val}}/<class>/*)")
            for cls_dir in sorted(d for d in (root / split).iterdir() if d.is_dir()):
                h.update(f"{split}/{cls_dir.name}/{sum(1 for _ in os.scandir(cls_dir))}\n".encode())
    for f in files:
        try:
            with open(f, "rb") as fh:
                h.update(f"{f.name}/{os.fstat(fh.fileno()).st_size}\n".encode())
                h.update(fh.read(head_bytes))
        except OSError as e:
            raise DataError(f"cannot read {f}: {e.strerror or e}") from None
    return h.hexdigest()[:16]


def idx_array(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a writable uint8 array.

    Hand-written (12 lines) because torchvision's reader does not open .gz files, which is
    how Debian (and the original site) ship them.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # zlib.error: a damaged .gz
        raise DataError(f"cannot read {path}: {' '.join(str(e).split()) or type(e).__name__}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    body = raw[4 + 4 * ndim:]
    if len(body) != math.prod(shape):
        raise DataError(f"{path}: truncated IDX file ({len(body)} bytes for shape {shape})")
    return np.frombuffer(bytearray(body), dtype=np.uint8).reshape(shape)


def idx_splits(paths: dict[str, list[Path]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fashion-MNIST's train and val (images N x 28 x 28, labels N) arrays from their files
    (`_fashion_mnist_files`), their shapes checked."""
    out = {}
    for split, (img, lab) in paths.items():
        x, y = idx_array(img), idx_array(lab)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"fashion-mnist: {img} and {lab} do not match (shapes {tuple(x.shape)}, {tuple(y.shape)})")
        if 0 in x.shape:
            raise DataError(f"fashion-mnist: {img} holds no images (shape {tuple(x.shape)})")
        out[split] = (x, y)
    return out


def split_checks(spec: DataSpec, n_train: int, top_label: int) -> None:
    """The label range and the train subset against the data: DataError (shared by `load_data` and the check
    before queueing)."""
    num_classes = spec.resolved("num_classes")
    if top_label + 1 > num_classes:
        raise DataError(f"{spec.dataset}: labels go up to {top_label} but data.num_classes is {num_classes}",
                        "data.num_classes")
    if spec.train_subset is not None and spec.dataset != "synthetic" and spec.train_subset > n_train:
        raise DataError(f"{spec.dataset}: train_subset {spec.train_subset} > {n_train} training images",
                        "data.train_subset")


def channels_ok(c: int, chans: int) -> None:
    """Images of c channels can feed a network of `chans` (1 -> n widened per batch, 3 -> 1 grayscale)."""
    if not (c == chans or (c == 1 and chans > 1) or (c == 3 and chans == 1)):
        raise DataError(f"cannot turn {c}-channel images into {chans} channels (data.in_chans)", "data.in_chans")


def check_idx_dataset(spec: DataSpec) -> None:
    """DataError unless Fashion-MNIST as spec names it can be read and fits it: what `load_data` checks, on
    the decoded files, without torch."""
    splits = idx_splits(_fashion_mnist_files(spec.root))
    (_, yt), (_, yv) = splits["train"], splits["val"]
    split_checks(spec, len(yt), int(max(yt.max(), yv.max())))
    channels_ok(1, spec.resolved("in_chans"))
