"""The CLI's machinery: parser, command registry, exit codes, JSON output, progress bar.

Conventions (docs: ../shared/design/CLI.md): global `--db PATH` and `--json` before or after the
command; exit 0 success, 2 bad input (one paragraph on stderr, no traceback), 130 Ctrl+C, 1 a bug.
A command is one handler returning an Output, registered with @command next to its parser set-up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from engine.checkpoint import CheckpointError
from engine.data import DataImportError
from engine.data.universe import expand_sources, is_universe, refusal, split_member
from engine.training.distributed import is_main

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130
# Commands that pool their --data: a universe there means all of its instruments. The others read one
# instrument and take a universe's member as UNIVERSE:CODE (us12:AAPL).
POOLED_DATA = ("train-price", "train-strategy", "evaluate")


class UsageError(Exception):
    """Bad arguments or options (exit 2); the message names the option and the reason."""


class BadInput(Exception):
    """Input that names something that does not exist or does not fit (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


@dataclass
class Output:
    data: dict[str, Any]  # printed as one JSON object with --json
    text: str  # printed otherwise
    exit_code: int = 0  # e.g. 130 for a job that ended cancelled


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace], Output]
    configure: Callable[[argparse.ArgumentParser], None]


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None] = lambda p: None):
    """Register a handler as the subcommand `name`; `configure` adds its own arguments."""
    def register(run: Callable[[argparse.Namespace], Output]) -> Callable[[argparse.Namespace], Output]:
        COMMANDS[name] = Command(name, help, run, configure)
        return run
    return register


def _global_options(parser: argparse.ArgumentParser, *, inherited: bool) -> None:
    # In the subcommand's parser they default to SUPPRESS, so they only override when given there.
    keep = {"default": argparse.SUPPRESS} if inherited else {}
    parser.add_argument("--db", type=Path, metavar="PATH", **({"default": None} | keep),
                        help="run-history SQLite file (default: the one the app uses)")
    parser.add_argument("--json", action="store_true", **keep,
                        help="print one JSON object on stdout and nothing else")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m engine",
                     description="the headless door to the engine, for servers, scripts and CI")
    _global_options(parser, inherited=False)
    shared = _Parser(add_help=False)
    _global_options(shared, inherited=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for cmd in COMMANDS.values():
        cmd.configure(sub.add_parser(cmd.name, help=cmd.help, description=cmd.help, parents=[shared]))
    return parser


def main(argv: list[str] | None = None) -> int:
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        resolve_data(args)
        output = COMMANDS[args.command].run(args)
    except (UsageError, DataImportError, CheckpointError, BadInput) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception:  # a bug: keep the traceback for the report
        traceback.print_exc()
        return EXIT_BUG
    if not is_main():  # under torchrun only rank 0 speaks, so --json stays one object
        return output.exit_code
    try:
        print(json.dumps(jsonable(output.data), ensure_ascii=False, allow_nan=False)
              if args.json else output.text)
        sys.stdout.flush()
    except BrokenPipeError:  # piped into `head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return output.exit_code


def resolve_data(args: argparse.Namespace) -> None:
    """--data universes: expanded to their instruments for pooling commands (files that fail to import
    are named on stderr and left out), refused with the member syntax for one-instrument commands."""
    data = getattr(args, "data", None)
    if not isinstance(data, list):
        return
    if args.command in POOLED_DATA:
        args.data, errors = expand_sources(data)
        for error in errors:
            print(f"warning: {error.file} left out: {error.message}", file=sys.stderr)
        return
    for source in data:
        if split_member(source) is None and is_universe(source):
            raise UsageError(f"--data {source}: {args.command} reads one instrument, and {source} is "
                             f"{refusal(source)} (`inspect {source}` lists them)")


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN/inf as null, paths as strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value) if isinstance(value, Path) else value


def iso_date(text: str) -> str:
    """argparse type for YYYY-MM-DD options: a bad date is a usage error (exit 2)."""
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date in YYYY-MM-DD form") from None


def open_store(args: argparse.Namespace):
    """The run history named by --db (or the app's default file)."""
    from engine.store import RunStore

    return RunStore(args.db)


class ProgressBar:
    """A one-line bar on stderr, drawn only when stderr is a terminal, so logs and --json stay clean."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, width: int = 30):
        self.total, self.label, self.width = max(int(total), 1), label, width
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._drawn = 0.0

    def update(self, done: int, note: str = "") -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._drawn < 0.1 and done < self.total):  # ~10 Hz
            return
        self._drawn = now
        filled = int(self.width * min(done, self.total) / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {note}".rstrip() + "\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
