"""CUDA paths: bf16 autocast training, channels-last, a whole trial on the GPU (skipped without one).

`bench/gpu_check.sh` runs these on a GPU machine (`python -m pytest -m cuda`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ablate.config.load import load_study
from ablate.config.net import NetConfig
from ablate.nn.net import build
from ablate.train.engine import run_trial

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

TINY_CONVNEXT = NetConfig(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), stem="patchify", patch_size=2, expansion=4,
                          groups="depthwise", kernel_size=7, spatial_conv="first", norm="layer", norms="one",
                          activation="gelu", activations="one", downsample="separate", layer_scale=1e-6,
                          drop_path=0.1, init="convnext", in_chans=3, num_classes=10)
TINY_RESNET = NetConfig(depths=(1, 1, 1, 1), dims=(32, 64, 128, 256), stem_width=16, in_chans=3, num_classes=10)
STUDY = """
name: tiny-cuda
model: {depths: [1, 1, 1, 1], dims: [16, 32, 64, 128], stem: patchify, patch_size: 2, expansion: 4,
        groups: depthwise, kernel_size: 7, spatial_conv: first, norm: layer, norms: one, activation: gelu,
        activations: one, downsample: separate}
data: {dataset: synthetic, image_size: 32, train_subset: 256, val_subset: 128}
recipe: {preset: modern, epochs: 2, batch_size: 64, warmup_epochs: 1, ema: 0.99}
"""


@pytest.mark.parametrize("cfg", [TINY_CONVNEXT, TINY_RESNET], ids=["convnext", "resnet"])
def test_bf16_autocast_training_learns_on_cuda(cfg: NetConfig) -> None:
    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = build(cfg).to(dev).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, fused=True)
    x = torch.randn(64, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (64,), device=dev)
    losses = []
    for _ in range(30):  # one fixed batch: the loss must fall
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
            assert out.dtype == torch.bfloat16
            loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())  # fp32 master weights


@pytest.mark.parametrize("cfg", [TINY_CONVNEXT, TINY_RESNET], ids=["convnext", "resnet"])
def test_channels_last_on_cuda_computes_what_the_cpu_computes(cfg: NetConfig) -> None:
    torch.manual_seed(0)
    cpu = build(cfg).eval()
    gpu = build(cfg).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.cuda().to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, 32, 32)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 on both sides
    try:
        with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            want = cpu(x)
            got = gpu(x.cuda().contiguous(memory_format=torch.channels_last)).cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in gpu.parameters() if p.ndim == 4)


def test_a_modern_recipe_trial_runs_on_cuda(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(STUDY)
    v = load_study(path).variants[0]
    lines: list[str] = []
    out = run_trial(v, 0, tmp_path / "t", device="cuda", progress=False, log=lines.append)
    assert out["device"] == "cuda" and out["epochs"] == 2
    assert out["peak_mem_mb"] > 0 and out["train_img_per_s"] > 0 and out["infer_img_per_s"] > 0
    assert 0 <= out["top1"] <= 100 and out["ema_top1"] is not None
    assert any("data" in line for line in lines)
    # resumable on the GPU too: a second call finds the finished checkpoint and trains nothing more
    again = run_trial(v, 0, tmp_path / "t", device="cuda", progress=False)
    assert again["top1"] == out["top1"]
