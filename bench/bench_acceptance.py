"""Issue 28's acceptance checks of `ablate bench`, for a quiet machine (the figures are only as quiet as it is):

1. `ablate bench studies/references.yaml` three times (each measuring again, `--no-cache`): is the inference
   img/s ordering of ResNet-50 and ConvNeXt-T/S/B the same in all three?
2. `ablate bench studies/kernel-size.yaml` at 224 px: does the cost (ms per batch) grow with the kernel size?

Each invocation is a separate process, as a user runs it; the figures are read from results/<study>/bench.csv.

    python bench/bench_acceptance.py [--results /tmp/bench-acceptance] [--repeats 3] [-- extra ablate bench args]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = ["ResNet-50", "ConvNeXt-T", "ConvNeXt-S", "ConvNeXt-B"]


def bench(study: str, results: Path, extra: list[str]) -> pd.DataFrame:
    cmd = [sys.executable, "-m", "ablate", "bench", str(ROOT / "studies" / study), "--results", str(results),
           "--no-cache", *extra]
    print("$", " ".join(cmd[1:]), flush=True)
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    print(out, flush=True)
    name = study.rsplit("/", 1)[-1].removesuffix(".yaml")
    return pd.read_csv(results / name / "bench.csv")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", type=Path, default=Path("/tmp/bench-acceptance"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("extra", nargs="*", help="more `ablate bench` options (after --)")
    a = p.parse_args()
    orders = []
    for _ in range(a.repeats):
        df = bench("references.yaml", a.results, a.extra)
        infer = df[(df["mode"] == "infer") & df["name"].isin(REFERENCES)]
        for precision, g in infer.groupby("precision"):
            order = list(g.sort_values("img_per_s", ascending=False)["name"])
            orders.append((precision, order))
            print(f"references, {precision}: fastest first: {' > '.join(order)}")
    for precision in dict.fromkeys(p for p, _ in orders):
        same = len({tuple(o) for q, o in orders if q == precision}) == 1
        print(f"ACCEPTANCE references {precision}: ordering {'EQUAL' if same else 'DIFFERS'} across {a.repeats} runs")
    df = bench("kernel-size.yaml", a.results, a.extra)
    for (mode, precision), g in df.groupby(["mode", "precision"]):
        ms = list(g.sort_values("name", key=lambda s: s.str.extract(r"(\d+)")[0].astype(int))["ms_per_batch"])
        grows = all(b > x for x, b in zip(ms, ms[1:], strict=False))
        print(f"ACCEPTANCE kernel-size {mode} {precision}: ms/batch k=3..11 {[round(m, 1) for m in ms]}: "
              f"{'GROWS' if grows else 'does NOT grow monotonically'}")


if __name__ == "__main__":
    main()
