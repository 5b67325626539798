"""The ``cascadelab`` command line.

Errors a user can fix (missing or invalid config, bad override, bad replay data) print
one line, ``cascadelab: error: ...``, and exit with status 2; nothing half-written is
left behind.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from sim import __version__
from sim.config import ConfigError, load_config
from sim.prices import PriceDataError
from sim.runtime import tune_runtime

USAGE_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cascadelab", description="Agent-based simulation of liquidation cascades on a derivatives exchange."
    )
    parser.add_argument("--version", action="version", version=f"cascadelab {__version__}")
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
    report.add_argument("--metric", default="liquidated_notional", help="sweep heatmap metric")
    report.add_argument("--x", help="sweep heatmap x axis (a grid key)")
    report.add_argument("--y", help="sweep heatmap y axis (a grid key)")
    return parser


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so temporary result folders are removed."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_runtime()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return {"run": _run, "sweep": _sweep, "report": _report}[args.command](args)
    except (ConfigError, PriceDataError, UsageError) as err:
        print(f"cascadelab: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("cascadelab: interrupted", file=sys.stderr)
        return 130


class UsageError(ValueError):
    """A bad command-line argument; the message is one line."""


def _run(args: argparse.Namespace) -> int:
    from sim.run import default_out_dir, run_to_folder  # heavy imports only when running

    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    config = load_config(args.config, args.overrides, args.seed)
    out = args.out or default_out_dir(args.config, config)
    run_to_folder(config, out, report=not args.no_report)
    print(out)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from sim.sweep import run_sweep

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    import polars as pl

    out = run_sweep(args.sweep, args.out, args.address, args.workers)
    print(out)
    failed = pl.read_parquet(out / "runs.parquet").filter(pl.col("status") == "failed").height
    if failed:
        print(f"cascadelab: {failed} run(s) failed; errors in {out / 'runs.parquet'}", file=sys.stderr)
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    import polars as pl

    from sim.config import load_config
    from sim.report import write_run_report, write_sweep_report
    from sim.run import TABLES, read_facts

    path: Path = args.path
    if (path / "runs.parquet").is_file():
        try:
            print(write_sweep_report(path, args.metric, args.x, args.y))
        except ValueError as err:
            raise UsageError(f"{path}: {err}") from None
        return 0
    if not (path / "manifest.json").is_file():
        raise UsageError(f"{path}: not a run folder (no manifest.json) or a sweep folder (no runs.parquet)")
    tables = {name: pl.read_parquet(path / f"{name}.parquet") for name in TABLES}
    print(write_run_report(path, tables, load_config(path / "config.toml"), path.name, facts=read_facts(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
