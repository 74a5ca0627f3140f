"""The `ablate` command line. Heavy imports (torch, timm) happen inside commands that need them.

The commands live in `ablate.commands` (one module per area); this module assembles them into one typer app
and is the entry point (`ablate = ablate.cli:main`)."""

from __future__ import annotations

from typing import Annotated

import typer

from ablate.commands.bench import bench
from ablate.commands.errors import OneLineErrors
from ablate.commands.reference import fields, presets, schema
from ablate.commands.reports import compare, report
from ablate.commands.status import status
from ablate.commands.study import flops, validate
from ablate.commands.sweep import run, worker

app = typer.Typer(
    cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
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
                                                    help="Print ablate's version and exit.")] = False,
             quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Say only what went wrong and the final "
                                                 "result: no progress bars, no progress lines.")] = False,
             verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Say more: optuna's log, and a "
                                                   "traceback under a one-line error.")] = False) -> None:
    """Architecture ablation studies of ConvNets."""
    from ablate.config.errors import StudyError
    from ablate.verbosity import set_level

    if quiet and verbose:
        raise StudyError("--quiet", "", "give --quiet or --verbose, not both")
    set_level(quiet, verbose)


def unwrapped(text: str) -> str:
    """A docstring as help text: its hard line breaks joined within each paragraph (the terminal wraps it)."""
    import inspect

    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


def first_sentence(text: str) -> str:
    """The command's line in `ablate --help`: the first sentence of its help."""
    import re

    head = unwrapped(text).split("\n\n")[0]
    end = re.search(r"(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z])", head)  # "e.g. another machine" ends no sentence
    return head if end is None else head[: end.start() + 1]


_COMMANDS = (validate, flops, bench, run, worker, status, report, compare, schema, fields, presets)  # as `--help` lists
for _command in _COMMANDS:
    app.command(help=unwrapped(_command.__doc__ or ""), short_help=first_sentence(_command.__doc__ or ""))(_command)


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
