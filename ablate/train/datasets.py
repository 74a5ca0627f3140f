"""Dataset readers for the in-memory sources: Fashion-MNIST (IDX files), CIFAR-10/100 (torchvision),
a synthetic dataset for tests; plus subsetting, resizing and channel handling. Where the files are and
the data fingerprint are torch-free, in `ablate.train.sources`.

Every reader returns ((train images, train labels), (val images, val labels)) as uint8 NCHW / int64
tensors; `ablate.train.data` turns them into batch sources.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ablate.config.study import DataSpec

from .sources import (
    _SYNTHETIC_SEED,
    SYNTHETIC_TRAIN,
    SYNTHETIC_VAL,
    _fashion_mnist_files,
    channels_ok,
    cifar_datasets,
    idx_array,
    idx_splits,
)


def _seed_of(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms, unlike hash())."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0]
               & np.uint64(0x7FFFFFFFFFFFFFFF))


# ---------------------------------------------------------------- batch sources


def stratified_subset(labels: Tensor, n: int, seed: int) -> Tensor:
    """Indices of n items, classes as balanced as the data allows (round-robin over a seeded shuffle)."""
    labels = torch.as_tensor(labels).cpu()
    total = len(labels)
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(_seed_of(seed, 7)))
    lab = labels[perm]
    order = torch.sort(lab, stable=True).indices  # positions in perm, grouped by class
    counts = torch.bincount(lab)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(total, dtype=torch.int64)
    rank[order] = torch.arange(total) - starts.repeat_interleave(counts)  # i-th of its class in perm
    key = rank * total + torch.arange(total)
    return perm[torch.argsort(key)[:n]].sort().values


def _resize(x: Tensor, size: int) -> Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    from torchvision.transforms.v2 import functional as TF

    # once at load, in chunks (bounded memory), antialiased like PIL
    return torch.cat([TF.resize(c, [size, size], antialias=True) for c in x.split(4096)])


def _to_channels(x: Tensor, chans: int) -> Tensor:
    c = x.shape[1]
    channels_ok(c, chans)
    if c == chans or (c == 1 and chans > 1):  # 1 -> n is widened per batch, after augmentation
        return x
    from torchvision.transforms.v2 import functional as TF

    return TF.rgb_to_grayscale(x)  # 3 -> 1



def _stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of the (subset of the) training images, in [0, 1] units."""
    std, mean = torch.std_mean(x.float().div_(255), dim=(0, 2, 3))
    return tuple(mean.tolist()), tuple(std.clamp_min(1e-3).tolist())


def _synthetic(spec: DataSpec, size: int, chans: int) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Per-class smooth random patterns plus noise: learnable, but not trivially (noise std ~ signal)."""
    k = spec.resolved("num_classes")
    gen = torch.Generator().manual_seed(_SYNTHETIC_SEED)
    coarse = torch.rand(k, chans, 4, 4, generator=gen)
    patterns = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    def make(n: int) -> tuple[Tensor, Tensor]:
        y = torch.arange(n) % k
        y = y[torch.randperm(n, generator=gen)]
        x = 0.25 + 0.5 * patterns[y] + 0.2 * torch.randn(n, chans, size, size, generator=gen)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    return make(spec.train_subset or SYNTHETIC_TRAIN), make(spec.val_subset or SYNTHETIC_VAL)


def _read_small(spec: DataSpec) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    if spec.dataset == "fashion-mnist":
        return _fashion_mnist(spec.root)
    return _cifar(spec.dataset, spec.root)


def _fashion_mnist(root: str | None) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    paths = _fashion_mnist_files(root)
    stats = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for split in ("train", "val") for f in paths[split])
    return _read_idx_cached(stats, paths)


_IDX_CACHE: dict[tuple, tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]] = {}


def _read_idx_cached(stats: tuple, paths: dict[str, list[Path]]) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """The decoded IDX files, kept for the process while the files are unchanged (same paths, sizes and
    mtimes): a worker runs trial after trial on the same data, and decompressing it costs ~0.4 s a trial.
    Callers never write into these tensors (subsets and resizes make new ones)."""
    if stats not in _IDX_CACHE:
        _IDX_CACHE.clear()  # one dataset at a time
        _IDX_CACHE[stats] = _read_idx_files(paths)
    return _IDX_CACHE[stats]


def _read_idx_files(paths: dict[str, list[Path]]) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    splits = {k: (torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y).long()) for k, (x, y) in
              idx_splits(paths).items()}
    return splits["train"], splits["val"]


def read_idx(path: Path) -> Tensor:
    """An IDX file (gzipped or not) as a uint8 tensor (`sources.idx_array`, no copy)."""
    return torch.from_numpy(idx_array(path))


def _cifar(name: str, root: str | None) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    splits = []
    for ds in cifar_datasets(name, root):
        x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        splits.append((x, torch.tensor(ds.targets, dtype=torch.int64)))
    return splits[0], splits[1]


