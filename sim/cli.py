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
from sim.runtime import tune_allocator

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
    return parser


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so temporary result folders are removed."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_allocator()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.command == "run":
            return _run(args)
    except (ConfigError, PriceDataError) as err:
        print(f"cascadelab: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("cascadelab: interrupted", file=sys.stderr)
        return 130
    return USAGE_ERROR


def _run(args: argparse.Namespace) -> int:
    from sim.run import default_out_dir, run_to_folder  # heavy imports only when running

    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    config = load_config(args.config, args.overrides, args.seed)
    out = args.out or default_out_dir(args.config, config)
    run_to_folder(config, out, report=not args.no_report)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
