"""The ``cascadelab`` command line.

Errors a user can fix (missing or invalid config, bad override, bad replay data, a
folder that is not a readable result) print one line, ``cascadelab: error: ...``, and
exit with status 2; nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sim import __version__, interrupt

# Before the imports below: Python drops a KeyboardInterrupt raised in importlib's
# weakref callbacks, and only our handler's flag then remembers it (`sim.interrupt`).
interrupt.install()
try:  # seconds on a busy machine (pydantic, numpy, polars): Ctrl-C here leaves quietly too
    from sim.config import ConfigError, check_replay_files, load_config
    from sim.prices import PriceDataError
    from sim.results import CONFIG, RUNS, ResultError, is_run_folder, is_sweep_folder, read_table
    from sim.runtime import tune_runtime

    interrupt.check()  # one that arrived during them and was dropped
except KeyboardInterrupt:
    print("cascadelab: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

if TYPE_CHECKING:
    import polars as pl

USAGE_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cascadelab", description="Agent-based simulation of liquidation cascades on a derivatives exchange."
    )
    parser.add_argument("-V", "--version", action="version", version=f"cascadelab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="simulate one config and write a result folder")
    run.add_argument("config", type=Path, help="experiment config (TOML)")
    run.add_argument("--out", type=Path, help="result folder (default results/<stem>-<hash8>-s<seed>)")
    run.add_argument("--seed", type=int, help="override the config's seed")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a config value (TOML syntax; repeatable), e.g. --set liquidation.mode=full",
    )
    run.add_argument("--no-report", action="store_true", help="skip report.html")
    sweep = commands.add_parser("sweep", help="run a grid of configs over seeds (resumable)")
    sweep.add_argument("sweep", type=Path, help="sweep file (TOML)")
    sweep.add_argument("--address", help="Dask scheduler to submit to, e.g. tcp://10.0.0.5:8786")
    sweep.add_argument("--workers", type=int, help="local worker processes (default: all cores)")
    sweep.add_argument("--out", type=Path, help="sweep folder (default results/sweeps/<stem>)")
    report = commands.add_parser("report", help="(re)write report.html of a run or sweep folder")
    report.add_argument("path", type=Path, help="a run folder or a sweep folder")
    report.add_argument(
        "--metric", default="liquidated_notional", help="sweep heatmap metric (a column of summary.parquet)"
    )
    report.add_argument("--x", help="sweep heatmap x axis (a grid key)")
    report.add_argument("--y", help="sweep heatmap y axis (a grid key)")
    compare = commands.add_parser("compare", help="one HTML report overlaying several runs")
    compare.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="two or more run folders")
    compare.add_argument("--out", type=Path, help="the report (default results/compare/<run>--<run>.html)")
    facts = commands.add_parser("facts", help="print the stylized facts of run or sweep folders")
    facts.add_argument("results", type=Path, nargs="+", metavar="RESULT", help="a run folder or a sweep folder")
    facts.add_argument("--out", type=Path, help="also write the table to FILE.parquet or FILE.csv")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_runtime()
    try:
        commands = {"run": _run, "sweep": _sweep, "report": _report, "compare": _compare, "facts": _facts}
        return commands[args.command](args)
    except (ConfigError, PriceDataError, ResultError, UsageError) as err:
        print(f"cascadelab: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("cascadelab: interrupted", file=sys.stderr)
        return 130
    except Exception:
        if not interrupt.INTERRUPTED.is_set():  # a library turned the interruption into its error
            raise
        print("cascadelab: interrupted", file=sys.stderr)
        return 130


class UsageError(ValueError):
    """A bad command-line argument; the message is one line."""


def _not_a_result(path: Path) -> UsageError:
    return UsageError(f"{path}: not a run folder (no manifest.json) or a sweep folder (no sweep.toml)")


def _run(args: argparse.Namespace) -> int:
    from sim.run import default_out_dir, run_to_folder  # heavy imports only when running

    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    config = load_config(args.config, args.overrides, args.seed)
    check_replay_files(config)
    out = args.out or default_out_dir(args.config, config)
    run_to_folder(config, out, report=not args.no_report)
    print(out)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from sim.sweep import ClusterError, run_sweep

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    import polars as pl

    try:
        out = run_sweep(args.sweep, args.out, args.address, args.workers)
    except ClusterError as err:
        raise UsageError(str(err)) from None
    print(out)
    failed = read_table(out, RUNS).filter(pl.col("status") == "failed").height
    if failed:
        print(f"cascadelab: {failed} run(s) failed; errors in {out / RUNS}.parquet", file=sys.stderr)
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:

    from sim.config import load_config
    from sim.report import write_run_report, write_sweep_report
    from sim.results import RECORDED_TABLES
    from sim.run import read_facts

    path: Path = args.path
    if is_sweep_folder(path):
        try:
            print(write_sweep_report(path, args.metric, args.x, args.y))
        except ValueError as err:
            raise UsageError(f"{path}: {err}") from None
        return 0
    if not is_run_folder(path):
        raise _not_a_result(path)
    tables = {name: read_table(path, name) for name in RECORDED_TABLES}
    print(write_run_report(path, tables, load_config(path / CONFIG), path.name, facts=read_facts(path)))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from sim.compare import default_compare_path, write_compare_report

    print(write_compare_report(args.runs, args.out or default_compare_path(args.runs)))
    return 0


def _facts(args: argparse.Namespace) -> int:
    """Print (and optionally write) the facts of each RESULT: a run's as they are, a
    sweep's averaged over the runs of each grid point; a ``result`` column names the
    folder when there are several."""
    import polars as pl

    if args.out is not None and args.out.suffix not in (".parquet", ".csv"):
        raise UsageError(f"{args.out}: --out must end in .parquet or .csv")
    frames = [_result_facts(path) for path in args.results]
    if len(frames) > 1:
        frames = [f.select(pl.lit(str(p)).alias("result"), pl.all()) for p, f in zip(args.results, frames, strict=True)]
    table = pl.concat(frames, how="diagonal_relaxed")
    with pl.Config(
        tbl_formatting="ASCII_MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=250,
        fmt_str_lengths=80,
    ):
        print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        (table.write_parquet if args.out.suffix == ".parquet" else table.write_csv)(args.out)
    return 0


def _result_facts(path: Path) -> pl.DataFrame:
    """The facts of one run folder, or the per-grid-point means of a sweep folder."""
    from sim.api import Sweep, load

    result = load(path)
    return result.facts() if isinstance(result, Sweep) else result.facts


if __name__ == "__main__":
    sys.exit(main())
