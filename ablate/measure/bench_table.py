"""`ablate bench`: every variant of a study benchmarked alone on one device (ablate.measure.bench), repetitions
interleaved across variants, the figures kept in results/<study>/bench.csv.

One measurement is (variant, mode, precision) at one setting (device, threads, batch, image size, scale). Its
rounds are interleaved: round 1 of every measurement, then round 2 of every measurement, ..., so a slow spell of
the machine (another process, thermal state) falls on every variant alike instead of on one. A measurement's
figure is the median img/s over its rounds with the min–max range (with 5 rounds, min–max is a distribution-free
94 % interval for the median).

The convs compute as PyTorch's own (`ablate.nn.kernels.plain_convs`): ablate's CPU kernels speed trials up on
small maps (cropped taps, a batched-matmul depthwise gradient, convs as linear layers), which would make the
measured cost partly ablate's code; `fast_paths=True` measures them instead (how fast a trial's network runs).

bench.csv is also the cache: a row is keyed by what determines it (the network as built, the device's name,
threads, batch, image size, precision, mode, torch version), so running the command again measures only what
is missing; `use_cache=False` measures everything again.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.config.errors import StudyError
from ablate.config.variant import LoadedStudy, Variant

BENCH_FILE = "bench.csv"
BENCH_VERSION = 1  # bump when what a bench figure means changes: old rows are then measured again
COLUMNS = ["name", "id", "kind", "params", "mode", "precision", "img_per_s", "img_per_s_lo", "img_per_s_hi",
           "ms_per_batch", "mem_mb", "mem_how", "device", "device_type", "threads", "batch", "image_size", "scale",
           "convs", "rounds", "iters", "torch", "note", "measured_at", "key"]


@dataclass(frozen=True)
class BenchOptions:
    """The setting of a bench run; None = the default for the device (see `resolve`)."""

    device: str | None = None
    batch: int | None = None  # default: 8 on a CPU, 64 on a GPU
    image_size: int | None = None  # default: measure.flops_image_size (paper scale) or data.image_size (train)
    scale: str = "paper"  # `paper`: the unscaled network, 3 channels, 1000 classes; `train`: as trained
    precisions: tuple[str, ...] | None = None  # default: fp32 and the device's fast precision
    modes: tuple[str, ...] = ("infer", "train")
    rounds: int = 5
    seconds: float = 1.0  # time budget of one measurement (one round of one variant, mode and precision)
    warmup: int = 2
    threads: int | None = None  # default: every core this process may use
    fast_paths: bool = False  # ablate's CPU conv kernels (how fast trials run) instead of PyTorch's convs
    use_cache: bool = True


@dataclass(frozen=True)
class _Job:
    variant: Variant
    spec: dict[str, Any]
    image_size: int
    in_chans: int
    classes: int


def bench_path(study_dir: Path) -> Path:
    return Path(study_dir) / BENCH_FILE


def _job(v: Variant, loaded: LoadedStudy, opts: BenchOptions) -> _Job:
    data = v.data
    if opts.scale == "paper":
        size = opts.image_size or loaded.study.measure.flops_image_size
        chans, classes, net = 3, 1000, v.net
    else:
        size = opts.image_size or data.resolved("image_size")
        chans, classes, net = data.resolved("in_chans"), data.resolved("num_classes"), v.train_net
    if v.timm:
        return _Job(v, {"timm": v.timm, "num_classes": classes, "in_chans": chans}, size, chans, classes)
    assert net is not None
    fields = net.canonical()
    fields.pop("init")  # how the weights start changes no cost
    return _Job(v, {"net": fields}, size, chans, classes)


def _key(job: _Job, setting: dict[str, Any], mode: str, precision: str) -> str:
    blob = json.dumps({"v": BENCH_VERSION, "spec": job.spec, "size": job.image_size, "mode": mode,
                       "precision": precision, **setting}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def check_options(opts: BenchOptions) -> None:
    """Bad input as one-line errors, before torch is imported."""
    from .bench import MODES, PRECISIONS

    for p in opts.precisions or ():
        if p not in (*PRECISIONS, "fast"):
            raise StudyError("--precision", "", f"unknown precision '{p}'; valid: {', '.join(PRECISIONS)}, fast")
    for m in opts.modes:
        if m not in MODES:
            raise StudyError("--mode", "", f"unknown mode '{m}'; valid: {', '.join(MODES)}")
    if opts.scale not in ("paper", "train"):
        raise StudyError("--scale", "", f"unknown scale '{opts.scale}'; valid: paper, train")
    for name, value in (("--batch", opts.batch), ("--image-size", opts.image_size), ("--rounds", opts.rounds),
                        ("--threads", opts.threads)):
        if value is not None and value < 1:
            raise StudyError(name, "", f"must be at least 1, got {value}")
    if opts.seconds <= 0:
        raise StudyError("--seconds", "", f"must be positive, got {opts.seconds:g}")


def _precisions(opts: BenchOptions, dev: Any) -> list[str]:
    from .bench import fast_precision

    fast = fast_precision(dev)
    asked = opts.precisions or ("fp32", "fast")
    out = [fast if p == "fast" else p for p in asked if p != "fast" or fast]
    if dev.type == "cpu" and "fp16" in out:
        raise StudyError("--precision", "", "fp16 autocast is for GPUs; on a CPU use fp32 or bf16")
    return list(dict.fromkeys(p for p in out if p))


def setting(opts: BenchOptions) -> tuple[Any, dict[str, Any], list[str]]:
    """(device, the setting every row of this run shares, the precisions to measure); sets torch's threads."""
    import torch

    from .bench import default_threads, device_name, resolve_device

    dev = resolve_device(opts.device)
    threads = opts.threads or default_threads()
    torch.set_num_threads(threads)
    batch = opts.batch or (8 if dev.type == "cpu" else 64)
    common = {"device": device_name(dev, threads), "device_type": dev.type, "threads": threads, "batch": batch,
              "scale": opts.scale, "convs": "ablate-cpu-kernels" if opts.fast_paths else "torch",
              "torch": torch.__version__}
    return dev, common, _precisions(opts, dev)


def read_bench(study_dir: Path) -> Any:
    """results/<study>/bench.csv as a DataFrame (empty when absent or unreadable)."""
    import pandas as pd

    try:
        return pd.read_csv(bench_path(study_dir), keep_default_na=True)
    except (OSError, ValueError):
        return pd.DataFrame(columns=COLUMNS)


def bench_study(loaded: LoadedStudy, study_dir: Path, opts: BenchOptions,
                progress: Callable[[int, int, str], None] | None = None) -> Any:
    """Benchmark every variant of a study; return this setting's rows (study order), measured or cached, and
    write them into results/<study>/bench.csv (rows of other settings are kept)."""
    import pandas as pd

    check_options(opts)
    if not loaded.variants:
        raise StudyError(loaded.file, "search", "a sampling search has no variants before it runs: nothing to bench")
    dev, common, precisions = setting(opts)
    jobs = [_job(v, loaded, opts) for v in loaded.variants]
    keyed = [(job, mode, p, _key(job, common, mode, p)) for job in jobs for p in precisions for mode in opts.modes]
    old = read_bench(study_dir)
    cached = {str(r["key"]): r.to_dict() for _, r in old.iterrows()} if opts.use_cache else {}
    # one measurement per key: variants that build the same network (e.g. two recipes of one network) share it
    todo: dict[str, tuple[_Job, str, str, str]] = {}
    for item in keyed:
        if item[3] not in cached:
            todo.setdefault(item[3], item)
    fresh = _measure(list(todo.values()), dev, common, opts, progress) if todo else {}
    rows = []
    for job, _mode, _precision, key in keyed:
        row = fresh.get(key) or cached[key]
        rows.append({**row, "name": job.variant.name, "id": job.variant.id})
    new = pd.DataFrame(rows, columns=COLUMNS)
    if fresh or len(old) == 0:
        keep = old[~old["key"].astype(str).isin(new["key"])] if len(old) else old
        _write(study_dir, pd.concat([keep, new], ignore_index=True) if len(keep) else new)
    return new


def _write(study_dir: Path, df: Any) -> None:
    from ablate.files import atomic_write

    Path(study_dir).mkdir(parents=True, exist_ok=True)
    atomic_write(bench_path(study_dir), lambda tmp: df[COLUMNS].to_csv(tmp, index=False))


def _measure(todo: list[tuple[_Job, str, str, str]], dev: Any, common: dict[str, Any], opts: BenchOptions,
             progress: Callable[[int, int, str], None] | None) -> dict[str, dict[str, Any]]:
    """Rounds interleaved over every measurement; one row per measurement key."""
    from .bench import build_spec, make_step, memory_mb, timed, warm_up

    models: dict[str, Any] = {}
    steps: dict[str, Any] = {}
    times: dict[str, list[float]] = {key: [] for *_, key in todo}
    info: dict[str, dict[str, Any]] = {}
    total, done = len(todo) * opts.rounds, 0
    if progress:
        progress(0, total, "")
    for r in range(opts.rounds):
        for job, mode, p, key in todo:
            if key in info and "note" in info[key]:
                done += 1
                continue
            if r == 0:
                info[key] = _prepare(job, mode, p, key, dev, common["batch"], opts, models, steps,
                                     (build_spec, make_step, memory_mb, warm_up))
            if "note" not in info[key]:
                times[key].append(timed(steps[key], dev, info[key]["iters"]))
            done += 1
            if progress:
                progress(done, total, job.variant.name)
    return {key: _row(job, mode, p, key, common, opts, times[key], info[key]) for job, mode, p, key in todo}


def _prepare(job: _Job, mode: str, p: str, key: str, dev: Any, batch: int, opts: BenchOptions,
             models: dict[str, Any], steps: dict[str, Any], fns: tuple[Any, ...]) -> dict[str, Any]:
    """Build (once per variant) and warm up a measurement; its iterations per round and memory, or a note."""
    import torch

    build_spec, make_step, memory_mb, warm_up = fns
    vid = job.variant.id
    try:
        if vid not in models:
            models[vid] = build_spec(job.spec, job.image_size)
            if models[vid] is not None:
                models[vid] = models[vid].to(dev)
                if dev.type == "cuda":
                    models[vid] = models[vid].to(memory_format=torch.channels_last)
        if models[vid] is None:
            return {"note": f"{job.spec.get('timm')} cannot be built at {job.image_size} px"}
        steps[key] = make_step(models[vid], mode, p, dev, batch, job.image_size, job.in_chans, job.classes,
                               plain=not opts.fast_paths)
        iters = warm_up(steps[key], dev, opts.warmup, opts.seconds)
        mem, how = memory_mb(models[vid], steps[key], mode, dev)
        params = sum(t.numel() for t in models[vid].parameters())
        return {"iters": iters, "mem_mb": round(mem, 1), "mem_how": how, "params": params}
    except (RuntimeError, ValueError) as e:  # out of memory, a size the network cannot take
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        steps.pop(key, None)
        return {"note": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}


def _row(job: _Job, mode: str, p: str, key: str, common: dict[str, Any], opts: BenchOptions,
         seconds: list[float], info: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": job.variant.name, "id": job.variant.id, "kind": job.variant.kind, "mode": mode,
                           "precision": p, "image_size": job.image_size, "rounds": len(seconds), **common,
                           **{k: info.get(k) for k in ("iters", "params", "mem_mb", "mem_how", "note")}, "key": key,
                           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if seconds:
        n = common["batch"] * info["iters"]
        rates = [n / s for s in seconds]
        row.update(img_per_s=round(statistics.median(rates), 2), img_per_s_lo=round(min(rates), 2),
                   img_per_s_hi=round(max(rates), 2),
                   ms_per_batch=round(1000 * statistics.median(seconds) / info["iters"], 3))
    return row
