"""Data sources: synthetic, Fashion-MNIST (real IDX files), imagefolder; subsets; batched augmentation."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ablate.config.study import DataSpec, Recipe
from ablate.train import data as D
from ablate.train import sources
from ablate.train.augment import random_resized_crop
from ablate.train.data import load_data
from ablate.train.datasets import read_idx, stratified_subset
from ablate.train.sources import DataError

FMNIST = Path("/usr/share/datasets/fashion-mnist")
PLAIN = dict(crop_scale=None, hflip=0.0, randaugment=None, random_erasing=0.0)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here on one intra-op thread (see conftest.one_thread)."""


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No download attempt, no system dataset folder, an empty private cache."""
    monkeypatch.setenv("ABLATE_OFFLINE", "1")
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "SYSTEM_DIRS", ())  # where _fashion_mnist_files reads it
    return tmp_path


def batches(source: D.BatchSource, epoch: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(source.epoch(epoch))


def test_synthetic_shapes_dtypes_and_lengths():
    spec = DataSpec(dataset="synthetic", image_size=16, train_subset=200, val_subset=70)
    data = load_data(spec, Recipe(preset="classic", batch_size=64), seed=0, device="cpu")
    assert (data.num_classes, data.in_chans, data.image_size) == (10, 3, 16)
    assert data.train.num_samples == 200 and data.val.num_samples == 70
    assert len(data.train) == 3 and len(data.val) == 2  # train drops the last partial batch, val keeps it
    train = batches(data.train)
    assert len(train) == 3
    for x, y in train:
        assert x.shape == (64, 3, 16, 16) and x.dtype == torch.float32
        assert y.shape == (64,) and y.dtype == torch.int64
    val = batches(data.val)
    assert [len(y) for _, y in val] == [64, 6]
    xs = torch.cat([x for x, _ in val])
    assert abs(xs.mean().item()) < 0.5 and 0.5 < xs.std().item() < 1.5  # normalized


def test_synthetic_is_deterministic_and_epochs_differ():
    spec = DataSpec(dataset="synthetic", image_size=16, train_subset=128)
    recipe = Recipe(preset="modern", batch_size=32)

    def run(seed: int, epoch: int) -> list[torch.Tensor]:
        torch.manual_seed(123)  # the engine seeds the global RNGs per epoch; RandAugment/erasing use them
        import random

        random.seed(123)
        return [x for x, _ in load_data(spec, recipe, seed, "cpu").train.epoch(epoch)]

    a, b = run(0, 0), run(0, 0)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0], run(0, 1)[0])  # reshuffled and re-augmented each epoch
    assert not torch.equal(a[0], run(1, 0)[0])


def test_synthetic_labels_are_learnable_signal():
    spec = DataSpec(dataset="synthetic", image_size=16, train_subset=500, val_subset=200)
    data = load_data(spec, Recipe(preset="classic", **PLAIN), 0, "cpu")
    xt, yt = map(torch.cat, zip(*batches(data.train), strict=True))
    xv, yv = map(torch.cat, zip(*batches(data.val), strict=True))
    centroids = torch.stack([xt[yt == c].mean(0) for c in range(10)])  # nearest class mean
    pred = torch.cdist(xv.flatten(1), centroids.flatten(1)).argmin(1)
    assert (pred == yv).float().mean() > 0.5


def test_stratified_subset_is_balanced_and_seeded():
    labels = torch.tensor([0] * 500 + [1] * 300 + [2] * 150 + [3] * 50)
    idx = stratified_subset(labels, 100, seed=0)
    assert len(idx) == len(set(idx.tolist())) == 100
    assert torch.bincount(labels[idx]).tolist() == [25, 25, 25, 25]
    assert torch.equal(idx, stratified_subset(labels, 100, seed=0))
    assert not torch.equal(idx, stratified_subset(labels, 100, seed=1))
    # a class with too few items gives all it has; the rest is spread evenly
    counts = torch.bincount(labels[stratified_subset(labels, 400, seed=3)]).tolist()
    assert counts[3] == 50 and sorted(counts[:3]) == [116, 117, 117]


def test_augmentation_changes_images_but_keeps_shapes():
    spec = DataSpec(dataset="synthetic", image_size=16, train_subset=64)
    plain = batches(load_data(spec, Recipe(preset="classic", batch_size=64, **PLAIN), 0, "cpu").train)[0]
    for change in ({"crop_scale": (0.08, 1.0)}, {"hflip": 1.0}, {"randaugment": "rand-m9-mstd0.5-inc1"},
                   {"random_erasing": 1.0}):
        recipe = Recipe(preset="classic", batch_size=64, **{**PLAIN, **change})
        x, y = batches(load_data(spec, recipe, 0, "cpu").train)[0]
        assert x.shape == plain[0].shape and x.dtype == torch.float32, change
        assert torch.equal(y, plain[1]), change  # same order: only the pixels differ
        assert not torch.allclose(x, plain[0]), change
        assert torch.isfinite(x).all(), change
    flipped = batches(load_data(spec, Recipe(preset="classic", batch_size=64, **{**PLAIN, "hflip": 1.0}), 0,
                                "cpu").train)[0][0]
    assert torch.allclose(flipped, plain[0].flip(-1), atol=1e-6)
    # full crop box == identity: the grid_sample crop is exact, not just "some resize"
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 8, 8)
    same = random_resized_crop(x, (1.0, 1.0), torch.zeros(4, dtype=torch.bool), g, ratio=(1.0, 1.0))
    assert torch.allclose(same, x, atol=1e-5)


def test_eval_has_no_augmentation():
    spec = DataSpec(dataset="synthetic", image_size=16, val_subset=64)
    a = batches(load_data(spec, Recipe(preset="modern", batch_size=64), 0, "cpu").val)[0][0]
    b = batches(load_data(spec, Recipe(preset="classic", batch_size=64, **PLAIN), 0, "cpu").val)[0][0]
    assert torch.equal(a, b)


def test_bad_randaugment_spec_is_a_data_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown section 'q9'"):  # refused when the study is loaded
        Recipe(preset="modern", randaugment="rand-q9")
    spec = DataSpec(dataset="synthetic", image_size=16)
    with pytest.raises(DataError, match="randaugment"):  # and, built around the check, still when loading data
        load_data(spec, Recipe.model_construct(**{**Recipe().model_dump(), "randaugment": "rand-q9"}), 0, "cpu")


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(blob)
    else:
        path.write_bytes(blob)


def _fake_fmnist(root: Path, n_train: int = 60, n_val: int = 20, gz: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_val)):
        _write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", np.arange(n) % 10)
    return root


def test_fashion_mnist_from_data_root(offline: Path):
    for gz in (True, False):
        root = _fake_fmnist(offline / f"fm-{gz}", gz=gz)
        spec = DataSpec(dataset="fashion-mnist", root=str(root), image_size=32, in_chans=3, train_subset=40)
        data = load_data(spec, Recipe(preset="classic", batch_size=16), 0, "cpu")
        assert (data.train.num_samples, data.val.num_samples) == (40, 20)
        x, y = next(data.train.epoch(0))
        assert x.shape == (16, 3, 32, 32) and y.dtype == torch.int64


def test_fashion_mnist_real_files():
    if not (FMNIST / "train-images-idx3-ubyte.gz").is_file():
        if os.environ.get("ABLATE_NO_FMNIST") == "1":
            pytest.skip(f"ABLATE_NO_FMNIST=1: Fashion-MNIST not installed at {FMNIST}")
        pytest.fail(f"Fashion-MNIST is not installed at {FMNIST}: `apt-get install dataset-fashion-mnist`, "
                    "or set ABLATE_NO_FMNIST=1 to skip this test")
    spec = DataSpec(dataset="fashion-mnist", image_size=32, train_subset=1000, val_subset=500)
    data = load_data(spec, Recipe(preset="modern", batch_size=100), 0, "cpu")
    assert (data.num_classes, data.in_chans, data.image_size) == (10, 1, 32)
    assert (data.train.num_samples, data.val.num_samples) == (1000, 500)
    assert torch.bincount(data.train.labels).tolist() == [100] * 10
    assert torch.bincount(data.val.labels).tolist() == [50] * 10
    x, y = next(data.train.epoch(0))
    assert x.shape == (100, 1, 32, 32) and torch.isfinite(x).all() and int(y.max()) <= 9
    full = read_idx(FMNIST / "t10k-labels-idx1-ubyte.gz")
    assert full.shape == (10000,) and torch.bincount(full.long()).tolist() == [1000] * 10


def test_missing_fashion_mnist_says_how_to_get_it(offline: Path):
    empty = offline / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as err:
        load_data(DataSpec(dataset="fashion-mnist", root=str(empty)), Recipe(), 0, "cpu")
    msg = str(err.value)
    assert str(empty) in msg and "dataset-fashion-mnist" in msg and "data.root" in msg and "\n" not in msg


def test_truncated_idx_is_a_data_error(offline: Path):
    root = _fake_fmnist(offline / "fm", gz=False)
    path = root / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_data(DataSpec(dataset="fashion-mnist", root=str(root)), Recipe(), 0, "cpu")


def test_missing_cifar_is_a_data_error(offline: Path):
    with pytest.raises(DataError, match="cifar10: no torchvision CIFAR10 files"):
        load_data(DataSpec(dataset="cifar10", root=str(offline)), Recipe(), 0, "cpu")


def test_imagefolder(tmp_path: Path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    spec = DataSpec(dataset="imagefolder", root=str(tmp_path), image_size=16)
    data = load_data(spec, Recipe(preset="modern", batch_size=4), 0, "cpu")
    assert (data.num_classes, data.in_chans, data.train.num_samples, len(data.train)) == (2, 3, 12, 3)
    x, y = next(data.train.epoch(0))
    assert x.shape == (4, 3, 16, 16) and y.dtype == torch.int64
    assert sum(len(y) for _, y in data.val.epoch(0)) == 6
    with pytest.raises(DataError, match="train"):
        load_data(DataSpec(dataset="imagefolder", root=str(tmp_path / "nope")), Recipe(), 0, "cpu")


def test_batch_erasing_follows_timm_random_erasing() -> None:
    from ablate.train.augment import BatchErasing

    torch.manual_seed(0)
    x = torch.zeros(4000, 1, 32, 32)
    out = BatchErasing(0.25)(x)
    erased = (out != 0).flatten(1)
    hit = erased.any(1)
    assert 0.22 < hit.float().mean().item() < 0.28  # probability per image
    share = erased[hit].float().mean(1)  # erased area of the images hit: timm's 2 % .. 1/3 of the image
    assert share.min().item() >= 0.015 and share.max().item() <= 0.40
    assert 0.12 < share.mean().item() < 0.22
    rows = erased[hit].view(-1, 32, 32).any(2)  # every erased region is one rectangle
    cols = erased[hit].view(-1, 32, 32).any(1)
    assert (erased[hit].sum(1) == rows.sum(1) * cols.sum(1)).all()
