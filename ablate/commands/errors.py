"""How `ablate` ends on a user error: one line on stderr and exit code 2, never a traceback (Ctrl-C: exit 130).

`OneLineErrors` is the app's click group: `ablate.cli.main` calls it with `one_line_errors=True`, and so can
an in-process test (`CliRunner().invoke(app, args, one_line_errors=True)`) to meet the command line exactly as
a user does. Without it the group behaves as typer's (exceptions reach the caller)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperGroup

from ablate.config.errors import StudyError
from ablate.secrets import guard_output


class OneLineErrors(TyperGroup):
    def main(self, args: Any = None, *rest: Any, one_line_errors: bool = False, **kwargs: Any) -> Any:
        if not one_line_errors:
            return super().main(args, *rest, **kwargs)
        guard_output()  # no secret (a --storage password) in any line this process writes
        kwargs["standalone_mode"] = False  # click's usage errors come here too: one line, not a framed box
        bare = not (sys.argv[1:] if args is None else args)  # plain `ablate`: the help, exit 0
        code = exit_code(lambda: super(OneLineErrors, self).main(args, *rest, **kwargs), bare)
        sys.exit(code)


def exit_code(call: Callable[[], Any], bare: bool = False) -> int:
    """Run the command line; what ends it becomes an exit code, user errors one line on stderr (`bare`: a
    command line without arguments: the help on stdout, exit 0, as for `ablate --help`). With `--verbose` a
    traceback follows the line."""
    try:
        code = call()
    except StudyError as e:
        print(e, file=sys.stderr)
        _traceback(e)
        return 2
    except OSError as e:  # the environment: a full or read-only disk, a lost file system
        where = f"{e.filename}: " if e.filename else ""
        print(f"{where}{e.strerror or e}", file=sys.stderr)
        _traceback(e)
        return 2
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C, as typer's parser reports it or as Python does
        print("interrupted", file=sys.stderr)
        return 130
    except typer.TyperException as e:  # a bad option or argument (typer's parser errors all derive from it)
        ctx = getattr(e, "ctx", None)
        if bare and ctx is not None:
            print(ctx.get_help())
            return 0
        print(f"{ctx.command_path if ctx else 'ablate'}: {e.format_message()}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # data problems are user errors too
        from ablate.train.sources import DataError

        if not isinstance(e, DataError):
            raise
        print(e, file=sys.stderr)
        _traceback(e)
        return 2
    return code if isinstance(code, int) else 0


def _traceback(e: BaseException) -> None:
    """Under `ablate --verbose`: where a user error was raised, below its one line."""
    from ablate.verbosity import verbose

    if verbose():
        import traceback

        print("".join(traceback.format_exception(e)).rstrip(), file=sys.stderr)
