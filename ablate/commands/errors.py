"""How `ablate` ends on a user error: one line on stderr and exit code 2, never a traceback (Ctrl-C: exit 130).

`OneLineErrors` is the app's click group: `ablate.cli.main` calls it with `one_line_errors=True`, and so can
an in-process test (`CliRunner().invoke(app, args, one_line_errors=True)`) to meet the command line exactly as
a user does. Without it the group behaves as typer's (exceptions reach the caller)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from typer.core import TyperGroup

from ablate.config.errors import StudyError
from ablate.secrets import guard_output


class OneLineErrors(TyperGroup):
    def main(self, *args: Any, one_line_errors: bool = False, **kwargs: Any) -> Any:
        if not one_line_errors:
            return super().main(*args, **kwargs)
        guard_output()  # no secret (a --storage password) in any line this process writes
        kwargs["standalone_mode"] = False  # click's usage errors come here too: one line, not a framed box
        code = exit_code(lambda: super(OneLineErrors, self).main(*args, **kwargs))
        sys.exit(code)


def exit_code(call: Callable[[], Any]) -> int:
    """Run the command line; what ends it becomes an exit code, user errors one line on stderr."""
    try:
        code = call()
    except StudyError as e:
        print(e, file=sys.stderr)
        return 2
    except OSError as e:  # the environment: a full or read-only disk, a lost file system
        where = f"{e.filename}: " if e.filename else ""
        print(f"{where}{e.strerror or e}", file=sys.stderr)
        return 2
    except Exception as e:  # data problems are user errors too, but live in the (torch-importing) train package
        return _other(e)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


def _other(e: Exception) -> int:
    kinds = {c.__name__ for c in type(e).__mro__}
    if "DataError" in kinds:
        print(e, file=sys.stderr)
        return 2
    if "Abort" in kinds:  # click's name for Ctrl-C
        print("interrupted", file=sys.stderr)
        return 130
    if "NoArgsIsHelpError" in kinds:  # plain `ablate`: the help
        e.show()  # type: ignore[attr-defined]
        return 2
    if "ClickException" in kinds:  # a bad option or argument
        ctx = getattr(e, "ctx", None)
        print(f"{ctx.command_path if ctx else 'ablate'}: {e.format_message()}", file=sys.stderr)  # type: ignore[attr-defined]
        return getattr(e, "exit_code", 2)
    raise e
