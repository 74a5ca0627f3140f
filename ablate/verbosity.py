"""How much ablate says on stderr: `ablate --quiet` (errors, failures and the final summary only) or `ablate
--verbose` (also optuna's log, and a traceback under a one-line error). Set once by the CLI, read through the
environment so that worker processes (forked or spawned) say as much as the command that started them."""

from __future__ import annotations

import os
import sys

ENV = "ABLATE_VERBOSITY"  # "quiet" | "verbose"; unset: normal


def set_level(quiet: bool, verbose: bool) -> None:
    """The level of this process and of the processes it starts."""
    if quiet or verbose:
        os.environ[ENV] = "quiet" if quiet else "verbose"
    else:
        os.environ.pop(ENV, None)


def quiet() -> bool:
    return os.environ.get(ENV) == "quiet"


def verbose() -> bool:
    return os.environ.get(ENV) == "verbose"


def info(line: str) -> None:
    """An informational line on stderr (progress, what was queued, where results went): not under --quiet."""
    if not quiet():
        print(line, file=sys.stderr, flush=True)
