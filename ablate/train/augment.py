"""Batched augmentation for in-memory datasets: a whole batch per call, on the training device.

Hand-written because torchvision/timm transform one image at a time, and at 32 px a Python loop of
128 crops, erasures or RandAugment ops costs more than a tiny net's training step. Each function
says which library transform it reproduces and where it differs.

Speed: the per-image random parameters (crop boxes, erasing boxes) are drawn with one torch call
and worked out in numpy. A batch has ~128 of them, so every torch op there would be pure dispatch
overhead (~5-10 us each, ~50 ops per batch); numpy does the same arithmetic in a fraction of that.
Only the pixel work (one grid_sample, one masked write) runs in torch, on the batch's device.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

RA_GROUP = 32  # images sharing one RandAugment op draw (see `RandAugment`)


@contextlib.contextmanager
def threads_set(threads: int | None) -> Iterator[None]:
    """Intra-op threads set to `threads` inside (None: unchanged)."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def one_thread(device: torch.device) -> Iterator[int | None]:
    """Batch augmentation on CPU runs on one intra-op thread: its ops are small (a batch of 32 px images)
    and many, so splitting each across threads costs more in fork/join than it saves, and far more when
    the cores are shared (2 threads: 2-20x slower per batch here). The training step keeps its threads.
    Yields the training's thread count (None off CPU), for the one big op that gains from them."""
    if device.type != "cpu":
        yield None
        return
    threads = torch.get_num_threads()
    with threads_set(1):
        yield threads


class BatchErasing:
    """Random erasing as timm's `RandomErasing(p, mode="pixel")` (area 2-33 %, log-uniform aspect 0.3-3.3,
    per-pixel normal noise), for a whole batch at once. timm's version loops over the images in Python
    (~2.4 ms per batch of 128 here: a third of the data time of the quick proxy); this one builds all
    boxes as one mask. One difference: where timm retries a box that does not fit (up to 10 times), this
    clamps it to the image. Draws: one `torch.rand(b, 5)` and the noise, from the global torch RNG
    (which the engine re-seeds every epoch). On CPU it writes into `x` (as timm's does) and returns it."""

    def __init__(self, probability: float, min_area: float = 0.02, max_area: float = 1 / 3,
                 min_aspect: float = 0.3):
        self.probability, self.min_area, self.max_area = probability, min_area, max_area
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))

    def boxes(self, b: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Per image, which rows (b, h) and which columns (b, w) its box covers (no rows: not erased)."""
        u = torch.rand(b, 5, dtype=torch.float64).numpy()
        area = (u[:, 0] * (self.max_area - self.min_area) + self.min_area) * h * w
        lo, hi = self.log_aspect
        aspect = np.exp(u[:, 1] * (hi - lo) + lo)
        bh = np.clip(np.round(np.sqrt(area * aspect)), 1, h - 1)
        bw = np.clip(np.round(np.sqrt(area / aspect)), 1, w - 1)
        top = np.floor(u[:, 2] * (h - bh + 1))
        left = np.floor(u[:, 3] * (w - bw + 1))
        rows, cols = np.arange(h), np.arange(w)
        in_rows = (rows >= top[:, None]) & (rows < (top + bh)[:, None])
        in_cols = (cols >= left[:, None]) & (cols < (left + bw)[:, None])
        in_rows &= (u[:, 4] < self.probability)[:, None]
        return in_rows, in_cols

    def __call__(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        in_rows, in_cols = self.boxes(b, h, w)
        box = in_rows[:, :, None] & in_cols[:, None, :]  # (b, h, w)
        if x.device.type == "cpu" and x.is_contiguous():
            # noise for the erased pixels only, as timm draws it (~5 % of the pixels), written by flat index: a
            # boolean masked_scatter over the whole batch costs 10x more than the indices of the ~5 %
            flat = np.flatnonzero(box)
            image, pixel = np.divmod(flat, h * w)
            index = ((image[:, None] * c + np.arange(c)) * (h * w) + pixel[:, None]).reshape(-1)
            x.view(-1)[torch.from_numpy(index)] = torch.randn(len(index), dtype=x.dtype)
            return x
        mask = torch.from_numpy(box).to(x.device, non_blocking=True)[:, None].expand_as(x)
        return torch.where(mask, torch.randn_like(x), x)  # no host sync on accelerators


def crop_boxes(u: np.ndarray, h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float],
               attempts: int) -> tuple[np.ndarray, ...]:
    """torchvision's `RandomResizedCrop.get_params` for b images at once, from uniforms u (b, 2*attempts+2):
    10 attempts at a box of random area and log-uniform aspect, the first that fits wins, else the
    central crop clamped to `ratio`. Returns (top, left, height, width) per image."""
    target = h * w * (scale[0] + (scale[1] - scale[0]) * u[:, :attempts])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = np.exp(log_lo + (log_hi - log_lo) * u[:, attempts:2 * attempts])
    cw, ch = np.round(np.sqrt(target * aspect)), np.round(np.sqrt(target / aspect))
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first, rows = ok.argmax(axis=1), np.arange(len(u))
    cw, ch = cw[rows, first], ch[rows, first]
    top = np.floor(u[:, -2] * (h - ch + 1))
    left = np.floor(u[:, -1] * (w - cw + 1))
    none = ~ok.any(axis=1)
    if none.any():  # torchvision's fallback: the whole image, clamped to the ratio range, centred
        in_ratio = w / h
        fw, fh = ((w, round(w / ratio[0])) if in_ratio < ratio[0] else
                  (round(h * ratio[1]), h) if in_ratio > ratio[1] else (w, h))
        cw[none], ch[none] = fw, fh
        top[none], left[none] = np.floor((h - fh) / 2), np.floor((w - fw) / 2)
    return top, left, ch, cw


def random_resized_crop(x: Tensor, scale: tuple[float, float], flip: Tensor, gen: torch.Generator,
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), attempts: int = 10,
                        threads: int | None = None) -> Tensor:
    """torchvision's RandomResizedCrop (+ horizontal flip where `flip`), for a whole batch in one grid_sample.

    The boxes are `crop_boxes` (exactly torchvision's sampling); the crop+resize+flip is one bilinear
    grid_sample. Boxes never exceed the image and the output has the image's size, so there is no
    downscaling to antialias. The grid is built directly, per axis (F.affine_grid does a generic batched
    matmul: 4x the cost of the sampling itself here). `threads`: intra-op threads for the grid_sample, the
    one op here big enough to gain from them (2 threads: 0.59 -> 0.32 ms per batch of 128 at 32 px).
    """
    b, _, h, w = x.shape
    u = torch.rand(b, 2 * attempts + 2, generator=gen, dtype=torch.float64).numpy()
    top, left, ch, cw = crop_boxes(u, h, w, scale, ratio, attempts)
    flip_np = flip.cpu().numpy()
    # normalised coordinates (align_corners=False): the box [left, left+cw) maps onto [-1, 1]
    sx = np.where(flip_np, -cw / w, cw / w)
    sy = ch / h
    cx, cy = (left + cw / 2) / w * 2 - 1, (top + ch / 2) / h * 2 - 1
    base_x = (np.arange(w) * 2 + 1) / w - 1  # pixel centres in [-1, 1]
    base_y = (np.arange(h) * 2 + 1) / h - 1
    grid = np.empty((b, h, w, 2), dtype=np.float32)
    grid[..., 0] = (sx[:, None] * base_x + cx[:, None])[:, None, :]
    grid[..., 1] = (sy[:, None] * base_y + cy[:, None])[:, :, None]
    grid_t = torch.from_numpy(grid).to(x.device, non_blocking=True)
    with threads_set(threads):
        return F.grid_sample(x, grid_t, mode="bilinear", padding_mode="border", align_corners=False)


class RandAugment:
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

    def __init__(self, spec: str, mean: tuple[float, ...], error: type[Exception] = ValueError):
        from timm.data.auto_augment import rand_augment_transform
        from torchvision.transforms import v2

        try:
            ra = rand_augment_transform(spec, {})
        except Exception as e:  # noqa: BLE001 - timm raises assorted errors for bad specs
            raise error(f"randaugment: cannot parse timm spec '{spec}': {e}") from None
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
