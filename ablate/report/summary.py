"""results/<study>/summary.csv: per variant over its finished seeds, the statistics of `analysis.variant_table`
(mean, interval, change vs the previous step, verdict) and the medians of the speed columns. A view of the
study's results table (`ablate.sweep.results.results_frame`), written by the commands that end a sweep
(`ablate run`, `ablate worker`), never by the workers while they train (scipy.stats: ~1.5 s to import)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ablate.config.variant import LoadedStudy
from ablate.sweep.results import write_atomic
from ablate.sweep.states import Status


def write_summary(study_dir: Path, df: Any, loaded: LoadedStudy) -> Path:
    """summary.csv of a study's results table `df`, judged by the study's evidence rule, written atomically
    beside results.csv."""
    from ablate.evidence import Rule

    rule = Rule.of(loaded.study)
    path = Path(study_dir) / "summary.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda p: summary(df, loaded.kind, rule).to_csv(p, index=False, float_format="%.4f"))
    return path


def summary(df: Any, kind: str = "steps", rule: Any = None) -> Any:
    """Per variant over its finished seeds: mean, std, n and the 95 % t-interval of top-1, the change vs the
    previous step (`steps`) or the first variant (otherwise) with its paired 95 % interval, p and verdict,
    and the medians of the speed columns (ablate.report.analysis computes them; see its evidence rules)."""
    import pandas as pd

    done = df[df["status"] == Status.DONE]
    keys = ["index", "name", "group", "id"]
    base = df.drop_duplicates("id")[keys + ["changes", "params", "gflops", "gflops_train", "ref_top1", "ref_gflops"]]
    if done.empty:
        return base.assign(n=0)
    from .analysis import variant_table  # scipy.stats: ~1.5 s to import, not needed until here

    agg = done.groupby("id").agg(top5_mean=("top5", "mean"), ema_top1_mean=("ema_top1", "mean"),
                                 wall_seconds=("wall_seconds", "sum"))
    table = variant_table(df.assign(fail_reason=df.get("fail_reason")), kind, rule)
    cols = {"top1_mean": "top1_mean", "top1_std": "top1_std", "top1_lo": "top1_ci_low", "top1_hi": "top1_ci_high",
            "n": "n", "vs": "delta_vs", "delta": "delta", "delta_lo": "delta_ci_low", "delta_hi": "delta_ci_high",
            "p": "delta_p", "p_adj": "p_adj", "p_equiv_adj": "p_equiv_adj", "verdict": "verdict", "look": "look",
            "seeds_to_settle": "seeds_to_settle", "family": "family", "train_img_per_s": "train_img_per_s",
            "infer_img_per_s": "infer_img_per_s"}
    stats = table[["id", *cols]].rename(columns=cols)
    out = base.merge(stats, on="id", how="left").merge(agg.reset_index(), on="id", how="left")
    out["n"] = out["n"].fillna(0).astype(int)
    return pd.DataFrame(out).sort_values("index")
