"""The global batch: gradient accumulation equals one large-batch step; micro_batch is not part of the id."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ablate.config.errors import StudyError
from ablate.config.load import load_study
from ablate.config.net import NetConfig
from ablate.nn.net import build
from ablate.train.accumulate import accumulate

TINY = dict(depths=(1, 1), dims=(8, 16), stem="patchify", patch_size=2, expansion=2, groups="depthwise",
            kernel_size=3, spatial_conv="first", activation="gelu", activations="one", norms="one",
            downsample="separate", init="convnext", in_chans=3, num_classes=5)


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("micro", [4, 5, 12])  # equal parts, a short last part, one part
def test_accumulated_passes_equal_one_large_batch_step(micro: int) -> None:
    torch.manual_seed(0)
    net = build(NetConfig(**TINY, norm="layer")).train()
    x, y = torch.randn(12, 3, 16, 16), torch.randint(0, 5, (12,))
    loss_big = accumulate(net, nn.functional.cross_entropy, x, y, micro=12)
    big = _grads(net)
    net.zero_grad(set_to_none=True)
    loss_acc = accumulate(net, nn.functional.cross_entropy, x, y, micro=micro)
    assert loss_acc.item() == pytest.approx(loss_big.item(), rel=1e-6)
    for a, b in zip(_grads(net), big, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)  # and so the update: the optimizer sees the same gradients
    opt.step()


def test_batchnorm_normalizes_over_each_pass() -> None:
    """BatchNorm is the exception, by design: each pass normalizes over its own images and updates the running
    statistics once, as each GPU's BatchNorm does in data-parallel training (no SyncBatchNorm)."""
    torch.manual_seed(0)
    net = build(NetConfig(**TINY, norm="batch")).train()
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 5, (8,))
    twin = build(NetConfig(**TINY, norm="batch")).train()
    twin.load_state_dict(net.state_dict())
    accumulate(net, nn.functional.cross_entropy, x, y, micro=4)
    with torch.no_grad():
        twin(x[:4])
        twin(x[4:])
    for (name, a), b in zip(net.named_buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


TINY_STUDY = """
name: tiny
model: {depths: [1, 1], dims: [16, 32], stem: patchify, patch_size: 2, expansion: 1}
data: {dataset: synthetic, image_size: 16, train_subset: 64, val_subset: 32}
recipe: {preset: classic, epochs: 1, batch_size: 32, lr: 0.1, warmup_epochs: 0, crop_scale: null, hflip: 0.0}
"""


def test_micro_batch_trains_the_same_variant(tmp_path: Path) -> None:
    from ablate.train.engine import run_trial

    path = tmp_path / "study.yaml"
    path.write_text(TINY_STUDY)
    whole = load_study(path).variants[0]
    parts = load_study(path, ["recipe.micro_batch=8"]).variants[0]
    assert parts.id == whole.id and parts.recipe.micro_batch == 8 and parts.recipe.learning_rate == 0.1
    result = run_trial(parts, 0, tmp_path / "t", progress=False)
    assert result["epochs"] == 1
    assert load_study(path, ["recipe.micro_batch=64"]).variants[0].id == whole.id  # above the batch: one pass
    with pytest.raises(StudyError, match=r"recipe\.micro_batch"):
        load_study(path, ["recipe.micro_batch=0"])


def test_out_of_memory_halves_the_micro_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without recipe.micro_batch, a pass that runs out of CUDA memory is done again in halves (simulated: a
    pass of more than 8 images raises the error a GPU would)."""
    from ablate.train import engine

    real = accumulate
    sizes: list[int] = []

    def small_memory(model, criterion, x, target, micro, *args):  # noqa: ANN001, ANN002
        sizes.append(micro)
        if micro > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, criterion, x, target, micro, *args)

    monkeypatch.setattr(engine, "accumulate", small_memory)
    path = tmp_path / "study.yaml"
    path.write_text(TINY_STUDY)
    lines: list[str] = []
    result = engine.run_trial(load_study(path).variants[0], 0, tmp_path / "t", progress=False, log=lines.append)
    assert result["epochs"] == 1 and sizes[:3] == [32, 16, 8] and set(sizes[3:]) == {8}
    assert any("out of memory: micro-batch 8 images" in line for line in lines)
    fixed = load_study(path, ["recipe.micro_batch=16"]).variants[0]  # a micro-batch the study fixed is kept
    with pytest.raises(torch.cuda.OutOfMemoryError):
        engine.run_trial(fixed, 0, tmp_path / "u", progress=False)


def test_learning_rate_scales_with_the_global_batch() -> None:
    from ablate.config.study import Recipe

    assert Recipe(preset="modern", batch_size=4096, micro_batch=128).learning_rate == pytest.approx(4e-3)
    assert Recipe(preset="modern", batch_size=1024).learning_rate == pytest.approx(1e-3)
    # the classic recipe at the paper's batch is Goyal et al.'s: lr 0.1 x 4096/256 with 5 epochs of warmup;
    # at 256 or less (the proxies' 128) no warmup, as before
    big = Recipe(preset="classic", batch_size=4096)
    assert big.learning_rate == pytest.approx(1.6) and big.warmup_epochs == 5
    assert Recipe(preset="classic", batch_size=128).warmup_epochs == 0
    assert Recipe(preset="classic", batch_size=4096, epochs=9).warmup_epochs == pytest.approx(0.5)  # scaled


@pytest.mark.slow
def test_two_gloo_processes_accumulating_match_one_process(tmp_path: Path) -> None:
    """2 ranks x 2 passes of 8 images (DDP all-reduces on the last pass only) = one process, one pass of 32."""
    import pandas as pd

    from ablate.train.ddp import run_trial_ddp
    from ablate.train.engine import run_trial

    path = tmp_path / "study.yaml"
    path.write_text(TINY_STUDY.replace("expansion: 1}", "expansion: 2, norm: layer, norms: one, activations: one, "
                                       "spatial_conv: first, groups: depthwise, downsample: separate}"))
    whole = load_study(path).variants[0]
    parts = load_study(path, ["recipe.micro_batch=8"]).variants[0]
    threads = torch.get_num_threads()
    try:
        one = run_trial(whole, 0, tmp_path / "one", device="cpu", threads=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    two = run_trial_ddp(parts, 0, tmp_path / "two", 2, device="cpu", threads=1)
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-3)
    a, b = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("one", "two"))
    assert b["train_loss"].to_numpy() == pytest.approx(a["train_loss"].to_numpy(), rel=1e-3)
