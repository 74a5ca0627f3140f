"""Data sources: every dataset behind one `BatchSource` interface.

Small datasets (fashion-mnist, cifar10/100, synthetic; read by `datasets`) are held in memory as
uint8 tensors, resized once at load, and augmented a whole batch at a time on the training device
(`augment`), so a CPU proxy stays compute-bound. `imagefolder` streams files through timm transforms
and a torch DataLoader.

Randomness: shuffling and crop boxes come from a private generator seeded by (seed, epoch);
RandAugment (torchvision) and random erasing (`BatchErasing`) draw from the global torch / `random`
RNGs, which the engine re-seeds from (seed, epoch) at the start of every epoch. An epoch's
batches are therefore a function of (seed, epoch) alone, which is what makes resume exact.

Measuring the data share: every `BatchSource` adds the time it spends making batches to
`data_seconds`; the engine logs `data NN%` (that time over the epoch's training time) each
epoch. `python -m ablate.train.data` prints it for a tiny net on Fashion-MNIST.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ablate.config.study import DataSpec, Recipe

from .augment import BatchErasing, RandAugment, one_thread, random_resized_crop
from .datasets import (
    _read_small,
    _resize,
    _seed_of,
    _stats,
    _synthetic,
    _to_channels,
    stratified_subset,
)
from .sources import DataError, channels_ok, split_checks


@dataclass
class Data:
    train: BatchSource
    val: BatchSource
    num_classes: int
    in_chans: int
    image_size: int


class BatchSource:
    """Batches of one split. `epoch(e)` yields (x float32 normalized NCHW, y int64), both on device."""

    num_samples: int
    batch_size: int
    drop_last: bool
    data_seconds: float = 0.0

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        raise NotImplementedError


class TensorSource(BatchSource):
    """An in-memory uint8 split, augmented per batch on `device`."""

    def __init__(self, images: Tensor, labels: Tensor, *, batch_size: int, device: torch.device,
                 mean: tuple[float, ...], std: tuple[float, ...], in_chans: int, seed: int,
                 train: bool, recipe: Recipe | None = None):
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(torch.int64).to(self.device)
        self.num_samples = len(labels)
        self.batch_size = batch_size
        self.seed, self.train = seed, train
        self.drop_last = train and self.num_samples > batch_size
        self.in_chans = in_chans
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.crop_scale = recipe.crop_scale if (train and recipe) else None
        self.hflip = recipe.hflip if (train and recipe) else 0.0
        self.randaugment = None
        if train and recipe and recipe.randaugment:
            self.randaugment = RandAugment(recipe.randaugment, mean, DataError)
        self.erasing = None
        if train and recipe and recipe.random_erasing > 0:
            self.erasing = BatchErasing(recipe.random_erasing)
        self.data_seconds = 0.0

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        gen = torch.Generator().manual_seed(_seed_of(self.seed, epoch, 1))
        order = torch.randperm(self.num_samples, generator=gen) if self.train else torch.arange(self.num_samples)
        order = order.to(self.device)
        for k in range(len(self)):
            t0 = time.perf_counter()
            with one_thread(self.device) as threads:
                idx = order[k * self.batch_size:(k + 1) * self.batch_size]
                x = self.images.index_select(0, idx).float().div_(255)
                y = self.labels.index_select(0, idx)
                if self.train:
                    x = self._augment(x, gen, threads)
                x = x.sub_(self.mean).div_(self.std)
                if self.erasing is not None:
                    x = self.erasing(x)
                if x.shape[1] != self.in_chans:  # grayscale stored once, widened per batch (cheaper to augment)
                    x = x.expand(-1, self.in_chans, -1, -1).contiguous()
            self.data_seconds += time.perf_counter() - t0
            yield x, y

    def _augment(self, x: Tensor, gen: torch.Generator, threads: int | None = None) -> Tensor:
        b = x.shape[0]
        flip = torch.rand(b, generator=gen) < self.hflip
        if self.crop_scale is not None:
            x = random_resized_crop(x, self.crop_scale, flip, gen, threads=threads)
        elif bool(flip.any()):
            flip = flip.to(x.device).view(-1, 1, 1, 1)
            x = torch.where(flip, x.flip(-1), x)
        if self.randaugment is not None:
            x = self.randaugment(x)
        return x


class LoaderSource(BatchSource):
    """A torch DataLoader (imagefolder) behind the BatchSource interface."""

    def __init__(self, dataset: torch.utils.data.Dataset, *, batch_size: int, device: torch.device, seed: int,
                 train: bool, workers: int):
        self.dataset, self.batch_size, self.device = dataset, batch_size, torch.device(device)
        self.num_samples = len(dataset)  # type: ignore[arg-type]
        self.seed, self.train, self.workers = seed, train, workers
        self.drop_last = train and self.num_samples > batch_size
        self.data_seconds = 0.0

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        gen = torch.Generator().manual_seed(_seed_of(self.seed, epoch, 1))
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=self.batch_size, shuffle=self.train, drop_last=self.drop_last,
            num_workers=self.workers, generator=gen, pin_memory=self.device.type == "cuda",
            persistent_workers=False, worker_init_fn=_worker_init)
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                return
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            self.data_seconds += time.perf_counter() - t0
            yield x, y


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # set per worker by the DataLoader from its generator
    random.seed(seed)
    np.random.seed(seed)


# ---------------------------------------------------------------- datasets


def load_data(spec: DataSpec, recipe: Recipe, seed: int, device: torch.device | str,
              batch_size: int | None = None) -> Data:
    """The train and val sources of `spec`, augmented as `recipe` says."""
    device = torch.device(device)
    batch = batch_size or recipe.batch_size
    size, chans = spec.resolved("image_size"), spec.resolved("in_chans")
    if spec.dataset == "imagefolder":
        return _imagefolder(spec, recipe, seed, device, batch)
    (xt, yt), (xv, yv), num_classes = _in_memory(spec, seed)
    xt, xv = (_to_channels(_resize(x, size), chans) for x in (xt, xv))
    mean, std = _stats(xt)
    common = dict(batch_size=batch, device=device, mean=mean, std=std, in_chans=chans, seed=seed)
    val = {**common, "batch_size": _val_batch(recipe, batch)}
    return Data(train=TensorSource(xt, yt, train=True, recipe=recipe, **common),
                val=TensorSource(xv, yv, train=False, **val),
                num_classes=num_classes, in_chans=chans, image_size=size)


def _val_batch(recipe: Recipe, batch: int) -> int:
    """Evaluation runs in passes of the training micro-batch (a global batch of 4096 is a training quantity)."""
    return min(batch, recipe.micro_batch or batch)


def check_in_memory(spec: DataSpec) -> None:
    """DataError unless `load_data` can build spec's in-memory dataset: the files are read and decoded, labels,
    subsets and channels checked as load_data checks them, but nothing is resized (`ablate run`'s check of a
    CIFAR study before it queues; Fashion-MNIST's is `sources.check_idx_dataset`, without torch)."""
    (xt, _), _, _ = _in_memory(spec, 0)
    channels_ok(xt.shape[1], spec.resolved("in_chans"))


def _in_memory(spec: DataSpec, seed: int) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], int]:
    """The train and val images (uint8, unresized) and labels of an in-memory dataset, subset as spec says, and
    the number of classes."""
    size, chans = spec.resolved("image_size"), spec.resolved("in_chans")
    if spec.dataset == "synthetic":
        (xt, yt), (xv, yv) = _synthetic(spec, size, chans)
    else:
        (xt, yt), (xv, yv) = _read_small(spec)
    num_classes = spec.resolved("num_classes")
    split_checks(spec, len(yt), int(max(int(yt.max()), int(yv.max()))))
    if spec.train_subset is not None and spec.dataset != "synthetic":
        keep = stratified_subset(yt, spec.train_subset, seed)
        xt, yt = xt[keep], yt[keep]
    if spec.val_subset is not None and spec.val_subset < len(yv):
        keep = stratified_subset(yv, spec.val_subset, 0)  # one fixed val subset for every trial and seed
        xv, yv = xv[keep], yv[keep]
    return (xt, yt), (xv, yv), num_classes


def _imagefolder(spec: DataSpec, recipe: Recipe, seed: int, device: torch.device, batch: int) -> Data:
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    if not spec.root:
        raise DataError("imagefolder: set data.root to a folder holding train/ and val/ class folders")
    root = Path(spec.root).expanduser()
    size = spec.resolved("image_size")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(f"imagefolder: {root / split} is not a folder (expected {root}/{{train,val}}/<class>/*)")
    scale = recipe.crop_scale or (1.0, 1.0)
    train_tf = create_transform(size, is_training=True, scale=scale, hflip=recipe.hflip,
                                auto_augment=recipe.randaugment, re_prob=recipe.random_erasing,
                                re_mode="pixel", interpolation="bicubic")
    val_tf = create_transform(size, is_training=False, interpolation="bicubic")
    try:
        train_ds, val_ds = ImageFolder(str(root / "train"), train_tf), ImageFolder(str(root / "val"), val_tf)
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"imagefolder: {e}") from None
    if train_ds.classes != val_ds.classes:
        raise DataError(f"imagefolder: {root}/train and {root}/val have different class folders")
    num_classes = spec.num_classes or len(train_ds.classes)
    if len(train_ds.classes) > num_classes:
        raise DataError(f"imagefolder: {len(train_ds.classes)} class folders but data.num_classes is {num_classes}")
    train_set: torch.utils.data.Dataset = train_ds
    val_set: torch.utils.data.Dataset = val_ds
    if spec.train_subset is not None:
        train_set = torch.utils.data.Subset(train_ds, stratified_subset(torch.tensor(train_ds.targets),
                                                                        spec.train_subset, seed).tolist())
    if spec.val_subset is not None and spec.val_subset < len(val_ds):
        val_set = torch.utils.data.Subset(val_ds, stratified_subset(torch.tensor(val_ds.targets),
                                                                    spec.val_subset, 0).tolist())
    workers = min(8, max(0, (os.cpu_count() or 1) - 1))
    common = dict(batch_size=batch, device=device, seed=seed, workers=workers)
    val = {**common, "batch_size": _val_batch(recipe, batch)}
    return Data(train=LoaderSource(train_set, train=True, **common), val=LoaderSource(val_set, train=False, **val),
                num_classes=num_classes, in_chans=3, image_size=size)


def _measure(steps: int = 30) -> None:
    """Step time and data share of a tiny net at 32 px, batch 128, on Fashion-MNIST (modern augmentation)."""
    from ablate.config.net import NetConfig
    from ablate.nn.net import build

    torch.manual_seed(0)
    spec = DataSpec(dataset="fashion-mnist", image_size=32)
    recipe = Recipe(preset="modern", batch_size=128)
    data = load_data(spec, recipe, 0, "cpu")
    net = build(NetConfig(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), stem="patchify", patch_size=2, expansion=4,
                          groups="depthwise", kernel_size=7, spatial_conv="first", norm="layer", norms="one",
                          activation="gelu", activations="one", downsample="separate", in_chans=1, num_classes=10))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    step_s, n = 0.0, 0
    for i, (x, y) in enumerate(data.train.epoch(0)):
        t0 = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 5:
            step_s += time.perf_counter() - t0
            n += 1
        if n == steps:
            break
    data_s = data.train.data_seconds * n / (n + 5)
    print(f"compute {step_s / n * 1e3:.1f} ms/step, data {data_s / n * 1e3:.2f} ms/batch "
          f"({data_s / (data_s + step_s):.1%} of the step), threads {torch.get_num_threads()}")


if __name__ == "__main__":
    _measure()
