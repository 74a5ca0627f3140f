"""Data sources: every dataset behind one `BatchSource` interface.

Small datasets (fashion-mnist, cifar10/100, synthetic) are held in memory as uint8 tensors,
resized once at load, and augmented a whole batch at a time on the training device, so a
CPU proxy stays compute-bound. `imagefolder` streams files through timm transforms and a
torch DataLoader.

Randomness: shuffling and crop boxes come from a private generator seeded by (seed, epoch);
RandAugment (torchvision) and random erasing (`BatchErasing`) draw from the global torch / `random`
RNGs, which the engine re-seeds from (seed, epoch) at the start of every epoch. An epoch's
batches are therefore a function of (seed, epoch) alone, which is what makes resume exact.

Measuring the data share: every `BatchSource` adds the time it spends making batches to
`data_seconds`; the engine logs `data NN%` (that time over the epoch's training time) each
epoch. `python -m ablate.train.data` prints it for a tiny net on Fashion-MNIST.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ablate.config.study import DataSpec, Recipe

SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
SYNTHETIC_TRAIN, SYNTHETIC_VAL = 512, 256
RA_GROUP = 32  # images sharing one RandAugment op draw (see `_RandAugment`)
_SYNTHETIC_SEED = 20220110  # the synthetic *dataset* is fixed; trial seeds only pick subsets/order


class DataError(Exception):
    """Data cannot be had: one line, user-facing (the CLI prints it and exits 2)."""


@dataclass
class Data:
    train: BatchSource
    val: BatchSource
    num_classes: int
    in_chans: int
    image_size: int


def data_dir() -> Path:
    """Where downloads go: $ABLATE_CACHE_DIR/data, else ~/.cache/ablate/data."""
    xdg = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(os.environ.get("ABLATE_CACHE_DIR") or xdg / "ablate") / "data"


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


def _seed_of(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms, unlike hash())."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0]
               & np.uint64(0x7FFFFFFFFFFFFFFF))


# ---------------------------------------------------------------- batch sources


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


class BatchErasing:
    """Random erasing as timm's `RandomErasing(p, mode="pixel")` (area 2-33 %, log-uniform aspect 0.3-3.3,
    per-pixel normal noise), for a whole batch at once. timm's version loops over the images in Python
    (~2.4 ms per batch of 128 here: a third of the data time of the quick proxy); this one builds all
    boxes as one mask (~0.4 ms). One difference: where timm retries a box that does not fit (up to 10
    times), this clamps it to the image."""

    def __init__(self, probability: float, min_area: float = 0.02, max_area: float = 1 / 3,
                 min_aspect: float = 0.3):
        self.probability, self.min_area, self.max_area = probability, min_area, max_area
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))

    def __call__(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        dev = x.device
        area = (torch.rand(b, device=dev) * (self.max_area - self.min_area) + self.min_area) * h * w
        lo, hi = self.log_aspect
        aspect = torch.exp(torch.rand(b, device=dev) * (hi - lo) + lo)
        bh = torch.sqrt(area * aspect).round().clamp(1, h - 1)
        bw = torch.sqrt(area / aspect).round().clamp(1, w - 1)
        top = (torch.rand(b, device=dev) * (h - bh + 1)).floor()
        left = (torch.rand(b, device=dev) * (w - bw + 1)).floor()
        rows, cols = torch.arange(h, device=dev), torch.arange(w, device=dev)
        in_rows = (rows >= top[:, None]) & (rows < (top + bh)[:, None])  # (b, h): one mask per axis, then
        in_cols = (cols >= left[:, None]) & (cols < (left + bw)[:, None])  # their outer product
        in_rows &= (torch.rand(b, device=dev) < self.probability)[:, None]
        mask = (in_rows[:, None, :, None] & in_cols[:, None, None, :]).expand_as(x)
        if dev.type == "cpu":  # noise for the erased pixels only, as timm draws it (~5 % of a batch's pixels)
            return x.masked_scatter(mask, torch.randn(int(mask.sum()), dtype=x.dtype))
        return torch.where(mask, torch.randn_like(x), x)  # no host sync on accelerators


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Batch augmentation on CPU runs on one intra-op thread: its ops are small (a batch of 32 px images)
    and many, so splitting each across threads costs more in fork/join than it saves, and far more when
    the cores are shared (2 threads: 2-20x slower per batch here). The training step keeps its threads."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
        self.randaugment = _RandAugment(recipe.randaugment, mean) if (train and recipe and recipe.randaugment) else None
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
            with _one_thread(self.device):
                idx = order[k * self.batch_size:(k + 1) * self.batch_size]
                x = self.images.index_select(0, idx).float().div_(255)
                y = self.labels.index_select(0, idx)
                if self.train:
                    x = self._augment(x, gen)
                x = (x - self.mean) / self.std
                if self.erasing is not None:
                    x = self.erasing(x)
                if x.shape[1] != self.in_chans:  # grayscale stored once, widened per batch (cheaper to augment)
                    x = x.expand(-1, self.in_chans, -1, -1).contiguous()
            self.data_seconds += time.perf_counter() - t0
            yield x, y

    def _augment(self, x: Tensor, gen: torch.Generator) -> Tensor:
        b = x.shape[0]
        flip = torch.rand(b, generator=gen) < self.hflip
        if self.crop_scale is not None:
            x = random_resized_crop(x, self.crop_scale, flip, gen)
        elif bool(flip.any()):
            flip = flip.to(x.device).view(-1, 1, 1, 1)
            x = torch.where(flip, x.flip(-1), x)
        if self.randaugment is not None:
            x = self.randaugment(x)
        return x


def random_resized_crop(x: Tensor, scale: tuple[float, float], flip: Tensor, gen: torch.Generator,
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), attempts: int = 10) -> Tensor:
    """torchvision's RandomResizedCrop (+ horizontal flip), for a whole batch in one grid_sample.

    Hand-written because torchvision/timm sample and crop one image at a time (a Python loop
    of 128 crops + resizes costs more than a tiny net's step). The box sampling is exactly
    `RandomResizedCrop.get_params` (10 attempts, then the central crop clamped to `ratio`),
    vectorised; the crop+resize+flip is one affine grid_sample (bilinear). Boxes never exceed
    the image and the output has the image's size, so there is no downscaling to antialias.
    """
    b, _, h, w = x.shape
    area = h * w
    target = area * torch.empty(b, attempts).uniform_(scale[0], scale[1], generator=gen)
    log_r = torch.empty(b, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    aspect = torch.exp(log_r)
    cw = torch.sqrt(target * aspect).round()
    ch = torch.sqrt(target / aspect).round()
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = ok.float().argmax(dim=1)
    cw = cw.gather(1, first[:, None]).squeeze(1)
    ch = ch.gather(1, first[:, None]).squeeze(1)
    none = ~ok.any(dim=1)
    if bool(none.any()):  # torchvision's fallback: whole image, clamped to the ratio range
        in_ratio = w / h
        if in_ratio < ratio[0]:
            fw, fh = w, round(w / ratio[0])
        elif in_ratio > ratio[1]:
            fw, fh = round(h * ratio[1]), h
        else:
            fw, fh = w, h
        cw[none], ch[none] = float(fw), float(fh)
    top = torch.floor(torch.rand(b, generator=gen) * (h - ch + 1))
    left = torch.floor(torch.rand(b, generator=gen) * (w - cw + 1))
    if bool(none.any()):
        top[none], left[none] = torch.floor((h - ch[none]) / 2), torch.floor((w - cw[none]) / 2)
    # normalised coordinates (align_corners=False): the box [left, left+cw) maps onto [-1, 1]. The grid is
    # built directly (F.affine_grid does a generic batched matmul: 4x the cost of the sampling itself here)
    sx = torch.where(flip, -cw / w, cw / w)
    sy = ch / h
    cx, cy = (left + cw / 2) / w * 2 - 1, (top + ch / 2) / h * 2 - 1
    base_x = (torch.arange(w, dtype=torch.float32) * 2 + 1) / w - 1  # pixel centres in [-1, 1]
    base_y = (torch.arange(h, dtype=torch.float32) * 2 + 1) / h - 1
    gx = (sx[:, None] * base_x + cx[:, None])[:, None, :].expand(b, h, w)
    gy = (sy[:, None] * base_y + cy[:, None])[:, :, None].expand(b, h, w)
    grid = torch.stack((gx, gy), dim=-1).to(x.device)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class _RandAugment:
    """timm's RandAugment spec (e.g. `rand-m9-mstd0.5-inc1`) run by torchvision's tensor RandAugment.

    timm's RandAugment works on one PIL image at a time (~0.3 ms per image: more than the
    whole step of a tiny net). torchvision.transforms.v2.RandAugment works on batched tensors
    but draws one op (and magnitude) per call, so it runs on groups of RA_GROUP images: each
    group gets its own ops, and since batches are reshuffled every epoch every image still
    sees independent draws across epochs. Parsing is timm's (`rand_augment_transform`), so a
    bad spec fails the way timm fails. Mapping: n layers -> n single-op draws, each applied
    with timm's probability (0.5); magnitude m of 10 -> torchvision bin m*10 of 101 (same
    fraction of each op's maximum); mstd -> a Gaussian jitter of m per group (timm: per op).
    The op set is torchvision's (timm's `inc1` set minus Invert/SolarizeAdd, plus Identity).
    Geometric ops fill with the dataset mean, as timm does.
    """

    def __init__(self, spec: str, mean: tuple[float, ...]):
        from timm.data.auto_augment import rand_augment_transform
        from torchvision.transforms import v2

        try:
            ra = rand_augment_transform(spec, {})
        except Exception as e:  # noqa: BLE001 - timm raises assorted errors for bad specs
            raise DataError(f"randaugment: cannot parse timm spec '{spec}': {e}") from None
        op = ra.ops[0]
        self.num_ops, self.prob = ra.num_layers, op.prob
        self.magnitude, self.mstd = float(op.magnitude), float(op.magnitude_std)
        self.mmax = float(op.magnitude_max or 10.0)
        fill = [float(m) for m in mean]
        self.op = v2.RandAugment(num_ops=1, magnitude=0, num_magnitude_bins=101,
                                 fill=fill if len(fill) > 1 else fill[0])

    def _draw_magnitude(self) -> int:
        m = self.magnitude
        if self.mstd == float("inf"):
            m = random.uniform(0, m)
        elif self.mstd > 0:
            m = random.gauss(m, self.mstd)
        return int(round(min(max(m, 0.0), self.mmax) * 10))

    def __call__(self, x: Tensor) -> Tensor:
        out = []
        for group in x.split(RA_GROUP):
            for _ in range(self.num_ops):
                if random.random() < self.prob:
                    self.op.magnitude = self._draw_magnitude()
                    group = self.op(group)
            out.append(group)
        return torch.cat(out).clamp_(0, 1)


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
    if spec.dataset == "synthetic":
        (xt, yt), (xv, yv) = _synthetic(spec, size, chans)
        num_classes = spec.resolved("num_classes")
    else:
        (xt, yt), (xv, yv) = _read_small(spec)
        num_classes = spec.resolved("num_classes")
    top = int(max(int(yt.max()), int(yv.max()))) + 1
    if top > num_classes:
        raise DataError(f"{spec.dataset}: labels go up to {top - 1} but data.num_classes is {num_classes}")
    if spec.train_subset is not None and spec.dataset != "synthetic":
        if spec.train_subset > len(yt):
            raise DataError(f"{spec.dataset}: train_subset {spec.train_subset} > {len(yt)} training images")
        keep = stratified_subset(yt, spec.train_subset, seed)
        xt, yt = xt[keep], yt[keep]
    if spec.val_subset is not None and spec.val_subset < len(yv):
        keep = stratified_subset(yv, spec.val_subset, 0)  # one fixed val subset for every trial and seed
        xv, yv = xv[keep], yv[keep]
    xt, xv = (_to_channels(_resize(x, size), chans) for x in (xt, xv))
    mean, std = _stats(xt)
    common = dict(batch_size=batch, device=device, mean=mean, std=std, in_chans=chans, seed=seed)
    return Data(train=TensorSource(xt, yt, train=True, recipe=recipe, **common),
                val=TensorSource(xv, yv, train=False, **common),
                num_classes=num_classes, in_chans=chans, image_size=size)


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
    if c == chans or (c == 1 and chans > 1):  # 1 -> n is widened per batch, after augmentation
        return x
    if c == 3 and chans == 1:
        from torchvision.transforms.v2 import functional as TF

        return TF.rgb_to_grayscale(x)
    raise DataError(f"cannot turn {c}-channel images into {chans} channels (data.in_chans)")


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


_IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


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


def _read_idx_files(paths: dict[str, list[Path]]) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    out = []
    for split in ("train", "val"):
        img, lab = paths[split]
        x, y = read_idx(img), read_idx(lab)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"fashion-mnist: {img} and {lab} do not match (shapes {tuple(x.shape)}, {tuple(y.shape)})")
        out.append((x.unsqueeze(1), y.long()))
    return out[0], out[1]


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
            _cifar(spec.dataset, spec.root)  # downloads them, or raises the DataError that says what is missing
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


def read_idx(path: Path) -> Tensor:
    """An IDX file (gzipped or not) as a uint8 tensor.

    Hand-written (12 lines) because torchvision's reader does not open .gz files, which is
    how Debian (and the original site) ship them.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    body = raw[4 + 4 * ndim:]
    if len(body) != math.prod(shape):
        raise DataError(f"{path}: truncated IDX file ({len(body)} bytes for shape {shape})")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def _cifar(name: str, root: str | None) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
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
        x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        splits.append((x, torch.tensor(ds.targets, dtype=torch.int64)))
    return splits[0], splits[1]


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
    return Data(train=LoaderSource(train_set, train=True, **common), val=LoaderSource(val_set, train=False, **common),
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
