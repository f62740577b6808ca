"""`python -m engine`: the headless door to the engine, for servers, scripts and CI.

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
from pathlib import Path
from typing import Any, TextIO

from engine.config import HORIZON, WINDOW
from engine.data import DataImportError, list_samples, load_bars

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad arguments or options (exit 2); the message names the option and the reason."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


@dataclass
class Output:
    data: dict[str, Any]  # printed as one JSON object with --json
    text: str  # printed otherwise


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
    parser = _Parser(prog="python -m engine", description=__doc__.splitlines()[0])
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
        output = COMMANDS[args.command].run(args)
    except (UsageError, DataImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception:  # a bug: keep the traceback for the report
        traceback.print_exc()
        return EXIT_BUG
    try:
        print(json.dumps(jsonable(output.data), ensure_ascii=False, allow_nan=False)
              if args.json else output.text)
        sys.stdout.flush()
    except BrokenPipeError:  # piped into `head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


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


# ---------------------------------------------------------------- samples


@command("samples", "list the bundled datasets")
def run_samples(args: argparse.Namespace) -> Output:
    rows = [{"name": s.name, "instrument": s.instrument, "market": s.market, "rows": s.rows,
             "first": s.first, "last": s.last} for s in list_samples()]
    text = "\n".join(f"{r['name']:<6} {r['rows']:>6} bars  {r['first']} .. {r['last']}  {r['instrument']}"
                     for r in rows)
    return Output({"samples": rows}, text)


# ---------------------------------------------------------------- inspect


def _configure_inspect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="FILE_OR_SAMPLE", help="a bundled sample name or a file path")
    parser.add_argument("--no-adjust", dest="adjust", action="store_false",
                        help="keep OHLC as in the file (ignore Adj Close)")
    parser.add_argument("--min-rows", type=int, default=WINDOW + HORIZON + 1, metavar="N",
                        help="fewer bars is an error (default: one training window, %(default)s)")


@command("inspect", "import and validate a file or sample; changes nothing", _configure_inspect)
def run_inspect(args: argparse.Namespace) -> Output:
    bars = load_bars(args.source, adjust=args.adjust, min_rows=args.min_rows)
    frame = bars.frame
    data = {
        "source": bars.source, "instrument": bars.instrument, "market": bars.market,
        "rows": len(frame), "first": f"{frame.index[0]:%Y-%m-%d}", "last": f"{frame.index[-1]:%Y-%m-%d}",
        "columns": {"present": bars.present, "derived": bars.derived, "missing": bars.missing},
        "adjusted": bars.adjusted,
        "warnings": [{"row": w.row, "column": w.column, "message": w.message, "date": w.date}
                     for w in bars.warnings],
        "last_close": float(frame["close"].iloc[-1]), "fingerprint": bars.fingerprint,
    }
    return Output(data, _inspect_text(data))


def _inspect_text(d: dict[str, Any]) -> str:
    cols = d["columns"]
    lines = [f"{d['source']}: {d['instrument']} (market {d['market']})",
             f"{d['rows']} bars {d['first']} .. {d['last']}, last close {d['last_close']:g}",
             "present: " + (", ".join(cols["present"]) or "-")]
    if cols["derived"]:
        lines.append("derived: " + ", ".join(cols["derived"]) + " (estimated as close x volume)")
    lines.append("missing: " + (", ".join(cols["missing"]) or "-"))
    if d["adjusted"]:
        lines.append("prices adjusted by Adj Close / Close (volume inversely)")
    lines.append(f"{len(d['warnings'])} warning(s)" + (":" if d["warnings"] else ""))
    lines += [_warning_line(w) for w in d["warnings"]]
    return "\n".join(lines)


def _warning_line(w: dict[str, Any]) -> str:
    where = "  line " + ("-" if w["row"] is None else str(w["row"]))
    where += f" ({w['date']})" if w["date"] else ""
    where += f" {w['column']}" if w["column"] else ""
    return f"{where}: {w['message']}"
