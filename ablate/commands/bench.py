"""`ablate bench`: what each variant costs in speed, measured like a benchmark (ablate.measure.bench_table)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ablate.config.errors import StudyError

from .options import DeviceOpt, ResultsOpt, SetOpt, StudyArg

BatchOpt = Annotated[int | None, typer.Option(help="Images per step; default 8 on a CPU, 64 on a GPU.")]
SizeOpt = Annotated[int | None, typer.Option(
    "--image-size", help="Image size in px; default: measure.flops_image_size (224) with --scale paper, "
    "data.image_size with --scale train.")]
ScaleOpt = Annotated[str, typer.Option(help="paper: the unscaled network (3 channels, 1000 classes), as the paper "
                                            "measures it; train: the network as the study trains it (after "
                                            "`scale:`, the data's channels and classes).")]
PrecisionOpt = Annotated[list[str] | None, typer.Option(
    help="fp32, bf16, fp16 or fast (the device's fast precision: bf16 on a GPU that has it, else fp16; bf16 on a "
         "CPU with AMX or AVX512-BF16, else none), repeatable; default: fp32 and fast.")]
ModeOpt = Annotated[list[str] | None, typer.Option(
    help="infer (eval-mode forward pass) and/or train (forward, backward, SGD step), repeatable; default both.")]
RoundsOpt = Annotated[int, typer.Option(help="Timed repetitions of each measurement, interleaved across variants; "
                                             "the figure is their median, the range their min-max.")]
SecondsOpt = Annotated[float, typer.Option(help="Time budget of one repetition: the iterations it runs are fixed "
                                                "in the warm-up to fill it.")]
WarmupOpt = Annotated[int, typer.Option(min=1, help="Untimed steps before the first repetition; the last one's "
                                                    "time sets the iterations per repetition.")]
ThreadsOpt = Annotated[int | None, typer.Option(help="CPU threads (torch.set_num_threads); default: every core "
                                                     "this process may use. On cores busy with other work, 2 threads "
                                                     "can run many times slower than 1 (every op waits for its "
                                                     "slowest thread): bench alone, or with --threads 1.")]
FastPathsOpt = Annotated[bool, typer.Option(
    "--fast-paths", help="Run ablate's CPU conv kernels (the trial engine's fast paths: cropped taps, batched-matmul "
    "depthwise gradients, convs as linear layers) instead of PyTorch's own convs: how fast trials run, not what "
    "the design costs.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Measure again instead of reading bench.csv.")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table | csv | json")]


def bench(study: StudyArg, set_: SetOpt = None, results: ResultsOpt = Path("results"), device: DeviceOpt = None,
          batch: BatchOpt = None, image_size: SizeOpt = None, scale: ScaleOpt = "paper",
          precision: PrecisionOpt = None, mode: ModeOpt = None, rounds: RoundsOpt = 5, seconds: SecondsOpt = 1.0,
          warmup: WarmupOpt = 2, threads: ThreadsOpt = None, fast_paths: FastPathsOpt = False,
          no_cache: NoCacheOpt = False, format: FormatOpt = "table") -> None:
    """Each variant's inference and training speed, measured alone on the device like a benchmark.

    Every variant's network (as the design builds it, with PyTorch's own convs: not ablate's trial engine or its
    CPU kernels) runs at a fixed batch and image
    size on random data: warmed up, then timed in ROUNDS repetitions interleaved across the variants (CUDA:
    CUDA events and one synchronisation per repetition), in fp32 and in the device's fast precision (autocast).
    Reported: median img/s with the min-max range over the repetitions, ms per batch, and memory (CUDA: the
    allocator's peak; CPU: an estimate from the tensors). The device, threads, batch, size and precision head
    the table.

    The figures go to results/<study>/bench.csv, which is also the cache (keyed by network, device, threads,
    batch, size, precision, mode and torch version): a second call measures only what is missing. `ablate
    report` then plots top-1 against these figures (labelled with the device) instead of the training rate.
    Close other work first: the figures are only as quiet as the machine.
    """
    if format not in ("table", "csv", "json"):
        raise StudyError("--format", "", f"unknown format '{format}'; valid: table, csv, json")
    from ablate.config.load import load_study
    from ablate.measure.bench_table import BenchOptions, check_options

    opts = BenchOptions(device=device, batch=batch, image_size=image_size, scale=scale,
                        precisions=tuple(precision) if precision else None,
                        modes=tuple(mode) if mode else ("infer", "train"), rounds=rounds, seconds=seconds,
                        warmup=warmup, threads=threads, fast_paths=fast_paths, use_cache=not no_cache)
    check_options(opts)
    loaded = load_study(study, set_ or [])
    df = _run(loaded, results / loaded.name, opts)
    if format == "json":
        print(json.dumps(df.to_dict(orient="records"), indent=1, default=str))
    elif format == "csv":
        df.to_csv(sys.stdout, index=False)
    else:
        print(bench_text(df))


def _run(loaded: Any, study_dir: Path, opts: Any) -> Any:
    from tqdm import tqdm

    from ablate.measure.bench_table import bench_study

    bar: list[tqdm] = []

    def progress(done: int, total: int, name: str) -> None:
        if not bar:
            bar.append(tqdm(total=total, desc="benchmarking", unit="run", file=sys.stderr, disable=None,
                            leave=False))
        bar[0].n = done
        bar[0].set_postfix_str(name[:30], refresh=True)

    try:
        return bench_study(loaded, study_dir, opts, progress)
    finally:
        if bar:
            bar[0].close()


def bench_text(df: Any) -> str:
    """The paper-style table: one line per variant, img/s median [min-max] per mode and precision, memory."""
    import pandas as pd

    if df.empty:
        return "nothing benchmarked"
    first = df.iloc[0]
    head = (f"device: {first['device']}; batch {int(first['batch'])}, {int(first['image_size'])} px "
            f"({first['scale']} scale), torch {first['torch']}"
            f"{', ablate CPU kernels' if first['convs'] != 'torch' else ''}; img/s: median [min-max] of "
            f"{int(first['rounds'])} interleaved rounds")
    lines: dict[str, dict[str, str]] = {}
    order = {"infer": 0, "train": 1, "fp32": 0, "bf16": 1, "fp16": 2}
    df = df.assign(_m=df["mode"].map(order), _p=df["precision"].map(order), _i=range(len(df)))
    for _, r in df.sort_values(["_m", "_p", "_i"]).iterrows():
        cells = lines.setdefault(str(r["name"]), {"name": str(r["name"])})
        if pd.notna(r.get("params")):
            cells.setdefault("params (M)", f"{r['params'] / 1e6:.1f}")
        col = f"{r['mode']} {r['precision']}"
        if pd.notna(r.get("img_per_s")):
            cells[f"{col} img/s"] = f"{r['img_per_s']:.1f} [{r['img_per_s_lo']:.1f}-{r['img_per_s_hi']:.1f}]"
            cells[f"{col} MiB"] = f"{r['mem_mb']:.0f}" if r["mem_mb"] >= 10 else f"{r['mem_mb']:.2g}"
        else:
            cells[f"{col} img/s"] = str(r.get("note") or "-")
    table = pd.DataFrame(list(lines.values())).fillna("-")
    hows = sorted({str(h) for h in df["mem_how"].dropna()})
    return "\n".join([head, table.to_string(index=False), *(f"MiB: {h}" for h in hows[:2])])
