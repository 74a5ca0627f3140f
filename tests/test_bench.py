"""`ablate bench` on tiny networks at tiny sizes (the figures themselves are noise here: only their shape, the
cache and how the report uses them are tested), and `recipe.precision`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_report import build, roadmap_study
from typer.testing import CliRunner

from ablate.cli import app
from ablate.config.errors import StudyError
from ablate.config.load import load_study
from ablate.measure import bench_table
from ablate.measure.bench_table import COLUMNS, BenchOptions, bench_study
from ablate.report.bench import with_bench
from ablate.report.charts import tradeoff_caption, tradeoff_panels
from ablate.report.writer import write_report

TINY = """name: tiny
model: {preset: convnext_atto, depths: [1, 1, 1, 1], dims: [8, 16, 32, 64]}
data: {dataset: synthetic, image_size: 32, train_subset: 32, val_subset: 16}
recipe: {preset: modern, epochs: 1, batch_size: 16, ema: null, randaugment: null, mixup: 0, cutmix: 0}
grid: {kernel_size: [3, 5]}
"""
FAST = ["--image-size", "32", "--batch", "2", "--rounds", "2", "--seconds", "0.01", "--warmup", "1", "--threads", "1"]


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def _bench(study: Path, results: Path, *extra: str):
    return CliRunner().invoke(app, ["bench", str(study), "--results", str(results), *FAST, *extra],
                              one_line_errors=True)


def test_bench_writes_its_table_and_reads_it_back(tiny: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    first = _bench(tiny, tmp_path / "results", "--precision", "fp32")
    assert first.exit_code == 0, first.output
    df = pd.read_csv(tmp_path / "results" / "tiny" / "bench.csv")
    assert list(df.columns) == COLUMNS
    assert len(df) == 4 and set(df["mode"]) == {"infer", "train"} and set(df["precision"]) == {"fp32"}
    assert (df["img_per_s_lo"] <= df["img_per_s"]).all() and (df["img_per_s"] <= df["img_per_s_hi"]).all()
    assert (df["mem_mb"] > 0).all() and (df["image_size"] == 32).all() and (df["threads"] == 1).all()
    assert "device:" in first.output and "batch 2, 32 px" in first.output and "1 thread" in first.output
    calls = []
    stub = {"key": "", "rounds": 0}
    monkeypatch.setattr(bench_table, "_measure", lambda todo, *a: calls.append(todo) or {k: stub for *_, k in todo})
    again = _bench(tiny, tmp_path / "results", "--precision", "fp32")  # every row cached: nothing measured
    assert again.exit_code == 0 and calls == []
    assert pd.read_csv(tmp_path / "results" / "tiny" / "bench.csv").equals(df)
    assert _bench(tiny, tmp_path / "results", "--precision", "fp32", "--batch", "3", "-f", "csv").exit_code == 0
    assert len(calls) == 1 and len(calls[0]) == 4  # another setting: measured (here: by the stub)
    assert _bench(tiny, tmp_path / "results", "--precision", "fp32", "--fast-paths", "-f", "csv").exit_code == 0
    assert len(calls) == 2  # ablate's CPU kernels are another setting too


def test_plain_convs_compute_what_the_fast_paths_compute(one_thread: None) -> None:
    import torch

    from ablate.config.presets import preset
    from ablate.nn.kernels import SpatialConv, plain_convs
    from ablate.nn.net import build

    torch.manual_seed(0)
    net = build(preset("convnext_atto", depths=[1, 1, 1, 1], dims=[8, 16, 32, 64], num_classes=10))
    x = torch.randn(2, 3, 32, 32)  # stage 4 is 1x1: taps cropped, the tiny depthwise gradient by matmul
    dw = [m for m in net.modules() if isinstance(m, SpatialConv) and m.groups > 1][-1]  # the last stage's
    fast = net(x)
    fast.sum().backward()
    grad = dw.weight.grad.clone()
    net.zero_grad()
    with plain_convs():
        plain = net(x)
        plain.sum().backward()
    assert torch.allclose(fast, plain, atol=1e-5) and torch.allclose(grad, dw.weight.grad, atol=1e-5)


@pytest.mark.parametrize(("args", "says"), [(["--precision", "fp8"], "unknown precision 'fp8'"),
                                            (["--mode", "eval"], "unknown mode 'eval'"),
                                            (["--scale", "huge"], "unknown scale 'huge'"),
                                            (["--rounds", "0"], "--rounds"),
                                            (["--format", "xml"], "unknown format 'xml'")])
def test_bad_bench_options_are_one_line(tiny: Path, tmp_path: Path, args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, ["bench", str(tiny), "--results", str(tmp_path), *args], one_line_errors=True)
    assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output
    assert not (tmp_path / "tiny").exists()


def test_fp16_is_refused_on_a_cpu(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="fp16"):
        bench_study(load_study(tiny), tmp_path, BenchOptions(device="cpu", precisions=("fp16",), image_size=32))


def _benched_table(loaded, tmp_path: Path, rates: list[float]) -> None:
    rows = [{"name": v.name, "id": v.id, "kind": "ablate", "mode": mode, "precision": "fp32", "img_per_s": rate,
             "img_per_s_lo": rate - 1, "img_per_s_hi": rate + 1, "device": "Test CPU (2 threads)", "threads": 2,
             "batch": 8, "image_size": 224, "scale": "paper", "measured_at": "2026-12-06T00:00Z", "key": f"{i}{mode}"}
            for i, (v, rate) in enumerate(zip(loaded.variants, rates, strict=False)) for mode in ("infer", "train")]
    out = tmp_path / "results" / loaded.name
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(out / "bench.csv", index=False)


def test_report_uses_the_bench_figures_and_names_the_device(tmp_path: Path) -> None:
    loaded = roadmap_study(tmp_path, n=3)
    outcome = {(i, 0): {"top1": 90.0 + i} for i in range(3)}
    _, plain = build(loaded, tmp_path, outcome)
    assert "bench infer img/s" not in plain and "training img/s (as trained, shared cores)" in plain
    assert "`ablate bench STUDY` measures that" in plain
    _benched_table(loaded, tmp_path, [300.0, 200.0, 100.0])
    write_report(loaded, tmp_path / "results", tmp_path / "reports", draw=False)
    md = (tmp_path / "reports" / loaded.name / "report.md").read_text()
    assert "bench infer img/s [min–max]" in md and "training img/s (as trained, shared cores)" in md
    assert "300.0 [299.0, 301.0]" in md and "Test CPU (2 threads), fp32, batch 8, 224 px" in md
    table = with_bench(pd.DataFrame({"id": [v.id for v in loaded.variants]}), tmp_path / "results" / loaded.name)
    col, xlabel, lower, _ = tradeoff_panels(table)[1]
    assert col == "bench_infer_img_per_s" and not lower and "Test CPU (2 threads), fp32" in xlabel
    assert "Test CPU" in tradeoff_caption(table)


def test_without_bench_the_chart_does_not_call_the_training_rate_speed(tmp_path: Path) -> None:
    table = with_bench(pd.DataFrame({"id": ["a", "b"]}), tmp_path)  # no bench.csv
    col, xlabel, _, title = tradeoff_panels(table)[1]
    assert col == "train_img_per_s" and "not the design's speed" in xlabel and "ablate bench" in title
    assert "not the design's speed" in tradeoff_caption(table)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_recipe_precision_trains(tiny: Path, tmp_path: Path, precision: str, one_thread: None) -> None:
    from ablate.train.engine import run_trial

    loaded = load_study(tiny, [f"recipe.precision={precision}"])
    result = run_trial(loaded.variants[0], 0, tmp_path / "t", device="cpu", progress=False)
    assert result["top1"] >= 0 and result["train_img_per_s"] > 0


def test_recipe_precision_validates_and_its_default_keeps_ids(tiny: Path) -> None:
    with pytest.raises(StudyError, match="precision"):
        load_study(tiny, ["recipe.precision=fp16"])
    assert load_study(tiny).variants[0].id == load_study(tiny, ["recipe.precision=auto"]).variants[0].id
    assert load_study(tiny).variants[0].id != load_study(tiny, ["recipe.precision=bf16"]).variants[0].id


def test_train_autocast() -> None:
    import contextlib

    import torch

    from ablate.train.precision import train_autocast

    cpu = torch.device("cpu")
    assert isinstance(train_autocast(cpu, "auto"), contextlib.nullcontext)
    assert isinstance(train_autocast(cpu, "fp32"), contextlib.nullcontext)
    with train_autocast(cpu, "bf16"):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.bfloat16



def test_bench_scales(tiny: Path) -> None:
    """paper: the unscaled network at measure.flops_image_size, 3 channels, 1000 classes; train: as trained."""
    loaded = load_study(tiny, ["scale.width=0.5"])
    v = loaded.variants[0]
    paper = bench_table._job(v, loaded, BenchOptions())
    train = bench_table._job(v, loaded, BenchOptions(scale="train"))
    assert (paper.image_size, paper.in_chans, paper.classes) == (224, 3, 1000)
    assert (train.image_size, train.in_chans, train.classes) == (32, 3, 10)
    assert paper.spec["net"]["dims"] == [8, 16, 32, 64] and train.spec["net"]["dims"] != paper.spec["net"]["dims"]


@pytest.mark.cuda
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_bench_on_cuda(tiny: Path, tmp_path: Path) -> None:
    """CUDA events, the allocator's peak, and the GPU's fast precision (bf16, or fp16 without it)."""
    opts = BenchOptions(device="cuda", batch=4, image_size=32, rounds=2, seconds=0.01, warmup=1)
    df = bench_study(load_study(tiny), tmp_path, opts)
    assert set(df["precision"]) in ({"fp32", "bf16"}, {"fp32", "fp16"}) and (df["img_per_s"] > 0).all()
    assert (df["mem_how"] == "peak allocated (cuda)").all() and (df["mem_mb"] > 0).all()
    assert (df["device_type"] == "cuda").all()
