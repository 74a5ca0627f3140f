"""Do the study's verdicts hold up? Simulated roadmaps judged by the adaptive rule as shipped (no training).

Each simulated study is a chain of 17 variants (16 changes, as the roadmap): variant v's top-1 on seed s is
  base + (sum of the planted effects of the changes up to v) + sigma_v * noise[v, s],
with sigma_v drawn per variant from --sigma (points of top-1; the quick proxy's seeds spread 0.4-2.5 points).
The study trains its `seeds`, then ablate.evidence.plan adds seeds round by round exactly as
`ablate run` does, until every change is settled or has `max_seeds`; the final verdicts are counted:
- a false finding: `helped` / `hurt` for a change whose planted effect is 0 or has the other sign, or
  `equivalent` for one whose planted effect is at least the margin;
- power: the share of changes of each planted size that end with the right settled verdict (`equivalent` for
  an effect inside the margin, the right sign otherwise).
Scenarios: every change null; 8 nulls and 8 effects of a few sizes; 8 nulls and 8 effects at exactly the
margin (the hardest case for equivalence).

    python bench/verdict_sim.py                       # 2000 studies a scenario, the quick study's rule
    python bench/verdict_sim.py --studies 200 --study studies/roadmap-quick.yaml
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ablate.config.load import load_study  # noqa: E402
from ablate.evidence import EQUIVALENT, HELPED, HURT, Rule, judge_family, plan  # noqa: E402

CHANGES = 16


def scenarios(margin: float) -> dict[str, list[float]]:
    sizes = [margin, -2 * margin, 4 * margin, -8 * margin]
    return {
        "all null": [0.0] * CHANGES,
        "8 null + effects of 1, 2, 4, 8 margins": [0.0] * 8 + sizes + [-s for s in sizes],
        "8 null + 8 at the margin": [0.0] * 8 + [margin, -margin] * 4,
    }


def one_study(effects: list[float], rule: Rule, sigma: tuple[float, float], rng: np.random.Generator
              ) -> tuple[list[str], int]:
    """Final verdicts of one simulated study, and the trials it trained."""
    top = rule.top
    all_seeds = list(rule.seeds) + [max(rule.seeds) + 1 + i for i in range(top - len(rule.seeds))]
    level = 70.0 + np.concatenate([[0.0], np.cumsum(effects)])
    sd = rng.uniform(*sigma, size=len(level))
    values = level[:, None] + sd[:, None] * rng.standard_normal((len(level), len(all_seeds)))
    pos = {s: j for j, s in enumerate(all_seeds)}
    trained: list[set[int]] = [set(rule.seeds) for _ in level]
    while True:
        series = [pd.Series({s: values[v, pos[s]] for s in sorted(trained[v])}) for v in range(len(level))]
        pairs = [(series[i], series[i + 1]) for i in range(CHANGES)]
        new = 0
        for round_ in plan(pairs, rule).values():
            for i, seeds in round_.items():
                for v in (i, i + 1):
                    new += len(set(seeds) - trained[v])
                    trained[v] |= set(seeds)
        if not new:
            break
    verdicts = [r["verdict"] for r in judge_family(pairs, rule)]
    return verdicts, sum(len(t) for t in trained)


def false_finding(verdict: str, effect: float, margin: float | None) -> bool:
    if verdict == HELPED:
        return effect <= 0
    if verdict == HURT:
        return effect >= 0
    return verdict == EQUIVALENT and margin is not None and abs(effect) >= margin


def right(verdict: str, effect: float, margin: float | None) -> bool:
    if margin is not None and abs(effect) < margin:
        return verdict == EQUIVALENT
    return verdict == (HELPED if effect > 0 else HURT)


def run(rule: Rule, studies: int, sigma: tuple[float, float], seed: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    out = []
    for name, effects in scenarios(rule.margin or 1.0).items():
        wrong = trials = 0
        hits: dict[float, list[int]] = {}
        for _ in range(studies):
            verdicts, n = one_study(effects, rule, sigma, rng)
            trials += n
            wrong += any(false_finding(v, e, rule.margin) for v, e in zip(verdicts, effects, strict=True))
            for v, e in zip(verdicts, effects, strict=True):
                hits.setdefault(abs(e), [0, 0])
                hits[abs(e)][0] += right(v, e, rule.margin)
                hits[abs(e)][1] += 1
        rate = wrong / studies
        out.append({"scenario": name, "fwer": rate, "mc_se": math.sqrt(rate * (1 - rate) / studies) if studies else 0,
                    "trials": trials / studies, "power": {k: h / n for k, (h, n) in sorted(hits.items())}})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="studies/roadmap-quick.yaml", help="study whose `evidence` rule is simulated")
    ap.add_argument("--studies", type=int, default=2000, help="simulated studies per scenario (>= 2000 for the record)")
    ap.add_argument("--sigma", type=float, nargs=2, default=(0.4, 1.6), help="range of a variant's seed std (points)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rule = Rule.of(load_study(args.study).study)
    print(f"rule of {args.study}: correction {rule.correction}, alpha {rule.alpha}, margin {rule.margin}, "
          f"seeds {len(rule.seeds or ())} -> at most {rule.top} ({rule.round_seeds} a round); looks "
          + ", ".join(f"{n} seeds: alpha {a:.4f}" for n, a in rule.looks()))
    print(f"variant seed std drawn from U{tuple(args.sigma)} points; {CHANGES} changes; "
          f"{args.studies} studies a scenario")
    t0 = time.perf_counter()
    for r in run(rule, args.studies, tuple(args.sigma), args.seed):
        print(f"\n[{r['scenario']}]")
        print(f"family-wise false-finding rate: {r['fwer']:.4f} ({args.studies} studies; Monte-Carlo se "
              f"{r['mc_se']:.4f})")
        print(f"trials per study: {r['trials']:.1f} (fixed {len(rule.seeds or ())} seeds: {17 * len(rule.seeds or ())};"
              f" max {17 * rule.top})")
        print("power (right settled verdict) by planted |effect|: "
              + ", ".join(f"{k:g}: {v:.3f}" for k, v in r["power"].items()))  # type: ignore[union-attr]
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
