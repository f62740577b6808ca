"""`python -m engine`: the headless door to the engine, for servers, scripts and CI.

Conventions (CLI.md): global `--db PATH` and `--json` before or after the command; exit 0 success,
2 bad input (one paragraph on stderr, no traceback), 130 cancelled, 1 anything else. A command is
one handler returning an Output, registered with @command next to its parser set-up.
"""

from engine.cli import data, train, results, portfolio, evaluate, explain, live  # noqa: F401, I001  (registers the commands, in help order)
from engine.cli.core import (
    COMMANDS, EXIT_BAD_INPUT, EXIT_BUG, EXIT_CANCELLED, EXIT_OK, BadInput, Command, Output,
    ProgressBar, UsageError, build_parser, command, jsonable, main, open_store,
)

__all__ = [
    "COMMANDS",
    "EXIT_BAD_INPUT",
    "EXIT_BUG",
    "EXIT_CANCELLED",
    "EXIT_OK",
    "BadInput",
    "Command",
    "Output",
    "ProgressBar",
    "UsageError",
    "build_parser",
    "command",
    "jsonable",
    "main",
    "open_store",
]
