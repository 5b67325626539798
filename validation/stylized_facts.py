"""Validation: does the simulated market reproduce the stylized facts? (`make validate`)

Runs the shipped configs over several seeds and prints every fact with its value, its
target and pass/fail; exits 1 if any misses. The exogenous path is a constant-volatility
GBM everywhere (no jumps, no GARCH), so whatever fat tails or volatility clustering
appear are made by the market, not put in. Facts are measured on the venue's own mark
and last-trade prices at one minute (``60 / step_seconds`` steps), by `sim.facts`.

Targets (issue "The market forms its own price"; real BTC 1-minute returns have kurtosis
above 10, Cont 2001 for the rest):

- calm market (``baseline.toml``): kurtosis of mark and last returns >= 6 and above the
  exogenous path's; ACF of |r| >= 0.1 at lag 10 and > 0 at lag 50; |ACF(r)| at lag 1
  <= 0.1 (means over seeds, BTC);
- leverage sweep (holders' median leverage 2x -> 16x in the flash crash, run for two
  hours so that the kurtosis has enough one-minute returns): liquidated notional, max
  drawdown and kurtosis all rise from the lowest to the highest leverage;
- depth sweep (market makers' capital on ``flash_crash.toml``): more capital gives a
  smaller max drawdown;
- flash crash: >= 30 % of liquidated accounts have a trigger; the largest cascade spans
  >= 20 accounts with depth >= 3; same-step triggers exist; at least half of the
  liquidated notional reaches the market within 10 simulated minutes.

Run folders are kept under ``results/validation/`` for inspection.
Run: ``python validation/stylized_facts.py [--seeds N] [--steps N] [--crash-steps N] [--workers N]``.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sim.facts import kurtosis, log_returns, price_path
from sim.results import CONFIG, read_table

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "validation"
#: The baseline with constant-volatility GBM paths at each instrument's volatility.
GBM = (
    "instruments.ETH.price.process=gbm",
    "instruments.ETH.price.volatility=0.00026",
    "instruments.SOL.price.process=gbm",
)
LEVERAGES = (2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True)
class Job:
    """One run: a config, overrides, a seed, and where it goes."""

    label: str
    config: str
    overrides: tuple[str, ...]
    seed: int

    @property
    def folder(self) -> Path:
        return OUT / f"{self.label}-s{self.seed}"


def simulate(job: Job) -> Path:
    """Run one job into its folder (replaced if it exists: the code may have changed)."""
    from sim.config import load_config
    from sim.run import run_to_folder
    from sim.runtime import tune_runtime

    tune_runtime()
    config = load_config(ROOT / job.config, list(job.overrides), seed=job.seed)
    return run_to_folder(config, job.folder, progress=False, report=False)


def run_config(folder: Path) -> dict:
    """The run's resolved config (its ``config.toml``) as a dict."""
    return tomllib.loads((folder / CONFIG).read_text())


def fact(folder: Path, name: str, series: str = "", lag: int | None = None, horizon: float | None = 60.0) -> float:
    """One value of a run's facts.parquet (BTC for price facts)."""
    facts = read_table(folder, "facts").filter(pl.col("fact") == name, pl.col("series") == series)
    if series:
        facts = facts.filter(pl.col("instrument") == "BTC")
    if horizon is not None:
        facts = facts.filter(pl.col("horizon_seconds") == horizon)
    if lag is not None:
        facts = facts.filter(pl.col("lag") == lag)
    return float(facts.get_column("value").item()) if facts.height == 1 else float("nan")


def metric(folder: Path, name: str) -> float:
    return float(read_table(folder, "metrics").get_column(name).item())


def mean(values: list[float]) -> float:
    return float(np.nanmean(values)) if values else float("nan")


class Checks:
    """Collects (name, value, target, passed) rows and prints them."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, bool]] = []

    def add(self, name: str, value: float | str, target: str, passed: bool) -> None:
        shown = value if isinstance(value, str) else f"{value:.3g}"
        self.rows.append((name, shown, target, bool(passed)))

    def print(self) -> None:
        width = max(len(r[0]) for r in self.rows)
        for name, value, target, passed in self.rows:
            print(f"{'PASS' if passed else 'FAIL'}  {name:<{width}}  {value:>24}  target {target}")
        failed = sum(not r[3] for r in self.rows)
        print(f"{len(self.rows) - failed} passed, {failed} failed")


def calm_checks(checks: Checks, runs: list[Path]) -> None:
    for series in ("mark", "last"):
        k = mean([fact(r, "kurtosis", series) for r in runs])
        exo = mean([fact(r, "kurtosis", "exogenous") for r in runs])
        checks.add(f"calm: kurtosis of 1-min {series} returns", k, ">= 6", k >= 6)
        checks.add(f"calm: {series} kurtosis above the exogenous path's", f"{k:.3g} vs {exo:.3g}", "> +1", k > exo + 1)
        lag10 = mean([fact(r, "acf_abs", series, 10) for r in runs])
        lag50 = mean([fact(r, "acf_abs", series, 50) for r in runs])
        lag1 = mean([fact(r, "acf", series, 1) for r in runs])
        checks.add(f"calm: ACF of |r| ({series}) at lag 10", lag10, ">= 0.1", lag10 >= 0.1)
        checks.add(f"calm: ACF of |r| ({series}) at lag 50", lag50, "> 0", lag50 > 0)
        checks.add(f"calm: |ACF of r| ({series}) at lag 1", abs(lag1), "<= 0.1", abs(lag1) <= 0.1)


def calm_diagnosis(runs: list[Path]) -> None:
    """Print what bounds the calm-market kurtosis (not a check): the venue's share s of
    the index's one-minute variance, the kurtosis of its impact alone, and the impact
    kurtosis a Gaussian exogenous path would need for a mark kurtosis of 6 if the
    parts were independent, ``3 + 3 / s²`` (`sim.facts` docstring)."""
    share = mean([fact(r, "impact_variance_share", "impact") for r in runs])
    impact = mean([fact(r, "kurtosis", "impact") for r in runs])
    print(
        f"calm, BTC: the venue's impact makes {share:.1%} of the index's 1-min variance; "
        f"impact kurtosis {impact:.3g}; a kurtosis of 6 on a Gaussian path needs >= {3 + 3 / share**2:.3g}"
    )


def rises(checks: Checks, name: str, by_level: dict[float, float]) -> None:
    values = [by_level[k] for k in sorted(by_level)]
    shown = " -> ".join(f"{v:.3g}" for v in values)
    checks.add(name, shown, "lowest < highest", values[-1] > values[0])


def by_level(runs: dict[float, list[Path]], measure) -> dict[float, float]:
    """Mean of ``measure(run folder)`` over the seeds of each level."""
    return {level: mean([measure(r) for r in folders]) for level, folders in runs.items()}


def leverage_checks(checks: Checks, runs: dict[float, list[Path]]) -> None:
    rises(checks, "leverage: liquidated notional", by_level(runs, lambda r: metric(r, "liquidated_notional")))
    rises(checks, "leverage: max drawdown", by_level(runs, lambda r: metric(r, "max_drawdown")))
    rises(checks, "leverage: kurtosis of 1-min mark returns", by_level(runs, lambda r: fact(r, "kurtosis", "mark")))
    rises(checks, "leverage: the same outside the shock's minutes", by_level(runs, kurtosis_outside_shocks))


def kurtosis_outside_shocks(folder: Path, instrument: str = "BTC", horizon: float = 60.0) -> float:
    """Kurtosis of the mark's one-minute returns without the minutes a scheduled shock of
    ``instrument`` overlaps. Over a whole crash run one imposed -6 % minute sets the
    kurtosis (a sample of n returns with one outlier has a kurtosis near n), whatever
    the market does; without it, what remains is what the market made of the shock."""
    config = run_config(folder)
    every = round(horizon / config["step_seconds"])
    market = read_table(folder, "market").filter(pl.col("instrument") == instrument).sort("step")
    prices, _ = price_path(market, "mark_price")
    r = log_returns(prices, every)
    # window j holds the moves of steps j * every + 1 .. (j + 1) * every (rows from step 0)
    start = np.arange(len(r)) * every
    keep = np.ones(len(r), dtype=bool)
    for shock in config.get("shocks", []):
        if shock["instrument"] == instrument:
            first, end = shock["step"], shock["step"] + shock.get("duration", 1)
            keep &= (start + every < first) | (start + 1 >= end)
    return kurtosis(r[keep])


def depth_checks(checks: Checks, runs: dict[float, list[Path]]) -> None:
    drawdown = by_level(runs, lambda r: metric(r, "max_drawdown"))
    values = [drawdown[k] for k in sorted(drawdown)]
    shown = " -> ".join(f"{v:.3g}" for v in values)
    name = "depth: max drawdown as market makers' capital grows"
    checks.add(name, shown, "highest capital < lowest", values[-1] < values[0])


def reached_market(folder: Path, within_seconds: float = 600.0) -> float:
    """Share of the liquidated notional that reached the market within ``within_seconds``.

    Book fills reach it at once. What the insurance fund or the backstop took over
    reaches it as they sell it (``unwind_flow`` of the market table, both holders'
    selling together, first in first out): a takeover of q at step s counts for what of
    it was sold by ``s + within``. ADL transfers and collateral conversions never trade.
    """
    liq = read_table(folder, "liquidations").sort("row_id")
    total = liq.get_column("notional").sum()
    if not total:
        return float("nan")
    step_seconds = run_config(folder)["step_seconds"]
    lag = round(within_seconds / step_seconds)
    booked = liq.filter(pl.col("kind").is_in(["partial", "full"])).get_column("notional").sum()
    market = read_table(folder, "market").sort("step")
    sold = (market.get_column("unwind_flow").abs() / market.get_column("index_price")).to_numpy()
    steps = market.get_column("step").to_numpy()
    reached, start = 0.0, 0.0
    taken = liq.filter(pl.col("kind").is_in(["insurance_fund", "backstop", "socialized"]))
    for qty, price, step in taken.select("qty", "price", "step").iter_rows():
        sold_by = sold[steps <= step + lag].sum()  # base units the holders had sold by then
        reached += min(max(sold_by - start, 0.0), qty) * price
        start += qty
    return float((booked + reached) / total)


def crash_checks(checks: Checks, runs: list[Path]) -> None:
    triggered, largest, depth, same_step, reach = [], [], [], [], []
    for r in runs:
        liq = read_table(r, "liquidations")
        cascades = read_table(r, "cascades")
        accounts = liq.get_column("account").n_unique()
        with_trigger = liq.filter(pl.col("trigger").is_not_null()).get_column("account").n_unique()
        triggered.append(with_trigger / accounts if accounts else 0.0)
        top = cascades.sort(["accounts", "depth"], descending=True).row(0, named=True) if cascades.height else None
        largest.append(top["accounts"] if top else 0)
        depth.append(top["depth"] if top else 0)
        steps = liq.select(pl.col("row_id").alias("trigger"), pl.col("step").alias("trigger_step"))
        linked = liq.join(steps, on="trigger")
        same_step.append(linked.filter(pl.col("step") == pl.col("trigger_step")).height)
        reach.append(reached_market(r))
    share, size, generations = mean(triggered), float(np.median(largest)), float(np.median(depth))
    with_same_step = float(sum(n > 0 for n in same_step))
    checks.add("crash: share of liquidated accounts with a trigger", share, ">= 0.3", share >= 0.3)
    checks.add("crash: largest cascade, accounts (median over seeds)", size, ">= 20", size >= 20)
    checks.add("crash: that cascade's depth (median over seeds)", generations, ">= 3", generations >= 3)
    checks.add("crash: runs with same-step triggers", with_same_step, f"= {len(runs)}", all(same_step))
    checks.add("crash: liquidated notional in the market within 10 min", mean(reach), ">= 0.5", mean(reach) >= 0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4320, help="steps of the calm runs (default 6 h at 5 s)")
    parser.add_argument("--crash-steps", type=int, default=1440, help="steps of the leverage sweep's crashes (2 h)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    seeds = range(1, args.seeds + 1)
    calm = [Job("calm", BASELINE, (*GBM, f"steps={args.steps}"), s) for s in seeds]
    leverage = {
        lev: [Job(f"leverage{lev:g}", CRASH, held(lev, args.crash_steps), s) for s in seeds] for lev in LEVERAGES
    }
    depth = {usd: [Job(f"depth{usd:g}", CRASH, maker_capital(usd), s) for s in seeds] for usd in MAKER_CAPITAL}
    crash = [Job("crash", CRASH, (), s) for s in seeds]
    jobs = calm + [j for v in leverage.values() for j in v] + [j for v in depth.values() for j in v] + crash
    OUT.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.workers) as pool:
        done = dict(zip(jobs, pool.map(simulate, jobs), strict=True))
    checks = Checks()
    calm_checks(checks, [done[j] for j in calm])
    leverage_checks(checks, {k: [done[j] for j in v] for k, v in leverage.items()})
    depth_checks(checks, {k: [done[j] for j in v] for k, v in depth.items()})
    crash_checks(checks, [done[j] for j in crash])
    checks.print()
    calm_diagnosis([done[j] for j in calm])
    return 0 if all(r[3] for r in checks.rows) else 1


BASELINE, CRASH = "configs/baseline.toml", "configs/flash_crash.toml"
#: The crash's populations: 0 the market makers, 5 the leveraged holders.
MAKERS, HOLDERS = 0, 5
MAKER_CAPITAL = (500_000.0, 2_000_000.0, 8_000_000.0)


def held(leverage: float, steps: int) -> tuple[str, str]:
    """Overrides: the crash's holders at a median leverage (log-normal, sigma 0.5), run for
    ``steps`` so the kurtosis has enough one-minute returns around the crash."""
    return f"populations.{HOLDERS}.leverage.lognormal=[{leverage}, 0.5]", f"steps={steps}"


def maker_capital(usd: float) -> tuple[str, str]:
    """Overrides: each crash market maker's capital and, in proportion, its quotes
    (2,000,000 USD quotes 50,000 per level in the shipped config)."""
    return f"populations.{MAKERS}.collateral.USD={usd}", f"populations.{MAKERS}.params.order_notional={usd / 40}"


if __name__ == "__main__":
    sys.exit(main())
