"""The `ablate` command line. Heavy imports (torch, timm) happen inside commands that need them.

The commands live in `ablate.commands` (one module per area); this module assembles them into one typer app
and is the entry point (`ablate = ablate.cli:main`)."""

from __future__ import annotations

from typing import Annotated

import typer

from ablate.commands.bench import bench
from ablate.commands.errors import OneLineErrors
from ablate.commands.reports import compare, report
from ablate.commands.study import flops, validate
from ablate.commands.sweep import run, status, worker

app = typer.Typer(
    cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Architecture ablation studies of ConvNets: one YAML study file, one command.\n\n"
         "A study names a base network, the variants to compare (steps, variants, a grid or a search), the data "
         "and the training recipe. See studies/ for examples and docs/study-file.md for every field.",
)


def _print_version(value: bool) -> None:
    if value:
        from ablate import __version__

        print(f"ablate {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                    help="Print ablate's version and exit.")] = False) -> None:
    """Architecture ablation studies of ConvNets."""


for _command in (validate, flops, bench, run, worker, status, report, compare):  # in the order `ablate --help` lists
    app.command()(_command)


def main() -> None:
    """Entry point: user errors are one line on stderr and exit code 2, never a traceback. SIGTERM (what a
    scheduler sends on pre-emption) is handled like Ctrl-C: the running trial is marked interrupted, exit 130."""
    import os
    import signal

    pid = os.getpid()

    def on_sigterm(signum: int, frame: object) -> None:
        if os.getpid() != pid:  # a forked helper (the FLOPs counting pool): die as by default
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    app(one_line_errors=True)  # exits with the command's code: see ablate.commands.errors
