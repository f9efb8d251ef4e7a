"""How the command line meets people: usage errors in one line, readable help, flags that take no value.

Click (inside Typer) prints usage errors as a boxed, multi-line panel; ``ConvaeGroup.main`` runs the
app in Click's non-standalone mode and prints ``convae: error: ...`` (exit code 2) instead, for the
console script and for ``typer.testing.CliRunner`` alike. ``ConvaeCommand`` shows metavars instead
of Python types in ``--help`` and refuses a number after a flag that takes none (``--quiet 3``),
which Click would otherwise read as the next positional argument.
"""

from __future__ import annotations

import difflib
import itertools
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

try:  # Typer >= 0.2x ships its own copy of Click
    from typer._click import Context, Parameter
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older Typer on the click package
    from click import Context, Parameter
    from click import exceptions as click_errors

PROG = "convae"
NUMBER = re.compile(r"[-+]?\d+(\.\d*)?")


TYPE_LABELS = {"int": "N", "float": "X", "str": "TEXT", "Path": "PATH", "path": "PATH", "file": "FILE",
               "directory": "DIR"}


def _tidy_params(params: list[Parameter]) -> list[Parameter]:
    """``params`` after ``_tidy_param`` (the group's completion options are added late, so this runs on use)."""
    for param in params:
        _tidy_param(param)
    return params


def _tidy_param(param: Parameter) -> None:
    """Help without Python types: no ``<bool>`` on flags, ``N`` not ``<int>``, ``[stop|skip]`` for choices,
    and no ``<list[Path]>`` column beside an argument's metavar."""
    if getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""
    show = getattr(param, "display_type_rich", None)  # how this Typer labels types in Rich help
    if show is None or getattr(show, "tidy", False):
        return
    if param.param_type_name == "argument":
        if param.metavar is not None:
            param.display_type_rich = _tagged(lambda ctx: None)  # type: ignore[method-assign]
        return
    param.display_type_rich = _tagged(lambda ctx: _label(show(ctx)))  # type: ignore[method-assign]


def _tagged(display: Any) -> Any:
    display.tidy = True
    return display


def _label(text: str | None) -> str | None:
    """``<int>`` -> ``N``, ``<list[str]>`` -> ``TEXT``, ``<stop|skip>`` -> ``[stop|skip]``; metavars unchanged."""
    if not text or not text.startswith("<"):
        return text
    inner = text[1:].split(">")[0].removeprefix("list[").removesuffix("]").removesuffix(" range")
    if "|" in inner:
        return f"[{inner}]"
    return TYPE_LABELS.get(inner, inner.upper())


def _usage_pieces(command: Any, ctx: Context) -> list[str]:
    """``[OPTIONS]`` then each argument's metavar as written (``INPUT... OUT.npy``), optional ones in brackets."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if param.param_type_name != "argument":
            continue
        name = param.metavar or param.name.upper() + ("..." if param.nargs != 1 else "")
        pieces.append(name if param.required else f"[{name}]")
    return pieces


class ConvaeCommand(TyperCommand):
    """A command with metavar usage lines, tidy help and a check for values given to flags."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        return _tidy_params(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        return _usage_pieces(self, ctx)

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        _refuse_flag_values(self, ctx, args)
        return super().parse_args(ctx, args)


def _refuse_flag_values(command: Any, ctx: Context, args: Sequence[str]) -> None:
    """``--quiet 3``: a number right after a flag that takes none is a mistake, not a path named 3."""
    flags = {opt for p in command.params if getattr(p, "is_flag", False) for opt in (*p.opts, *p.secondary_opts)}
    for flag, value in itertools.pairwise(args):
        if flag == "--":
            return
        if flag in flags and NUMBER.fullmatch(value) and not Path(value).exists():
            quality = any("--quality" in p.opts for p in command.params)
            hint = f"; did you mean --quality {value}?" if quality and flag == "--quiet" else f" (got {value!r})"
            raise click_errors.UsageError(f"{flag} takes no value{hint}", ctx)


class ConvaeGroup(TyperGroup):
    """The ``convae`` group: one-line usage errors with a suggestion, ``-h``/``--help``, tidy help."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        return _tidy_params(super().get_params(ctx))

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None and not ctx.resilient_parsing:
            close = difflib.get_close_matches(name, list(self.commands), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the commands are {', '.join(self.commands)}"
            raise click_errors.UsageError(f"no such command {name!r}{hint}", ctx)
        return super().resolve_command(ctx, args)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Run the app; in standalone mode print usage errors as one line (exit 2) and exit with the code."""
        run = super().main
        if not standalone_mode:  # the caller handles Click's exceptions itself
            return run(args, prog_name or PROG, complete_var, standalone_mode=False, **extra)
        try:
            code = run(args, prog_name or PROG, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:  # plain `convae`: the help (Typer's Rich help printed itself)
            if exc.format_message().strip():
                typer.echo(exc.format_message())
            code = 0
        except click_errors.ClickException as exc:
            typer.echo(f"{PROG}: error: {usage_message(exc)}", err=True)
            code = exc.exit_code
        except typer.Abort:
            typer.echo(f"{PROG}: error: aborted", err=True)
            code = 1
        sys.exit(code if isinstance(code, int) else 0)


def usage_message(exc: Exception) -> str:
    """Click's message for ``exc`` as one line, naming the command and its usage where that helps."""
    ctx = getattr(exc, "ctx", None)
    where = f"{ctx.info_name}: " if ctx is not None and ctx.parent is not None else ""
    if isinstance(exc, click_errors.NoSuchOption):
        return where + _no_such_option(exc, ctx)
    text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    text = " ".join(text.replace("Choose from:", "choose from").replace("Value error, ", "").split()).rstrip(".")
    text = text[:1].lower() + text[1:]
    if isinstance(exc, click_errors.MissingParameter) and ctx is not None:
        text += f" (usage: {ctx.command_path} {' '.join(ctx.command.collect_usage_pieces(ctx))})"
    return where + text


def _no_such_option(exc: Any, ctx: Context | None) -> str:
    """``no such option --forse; did you mean --force?``, and what ``-q`` means now where it does not apply."""
    name = exc.option_name
    if name == "-q" and ctx is not None:
        return "no option -q here: -q is --quality, chosen when compressing; --quiet prints nothing but errors"
    if name.startswith("-q") and not name.startswith("--") and ctx is not None:  # -q3
        return f"no option {name} here: -q N is --quality N, chosen when compressing"
    if exc.possibilities:
        return f"no such option {name}; did you mean {' or '.join(sorted(exc.possibilities))}?"
    return f"no such option {name} (see --help)"


class ConvaeTyper(typer.Typer):
    """A Typer app whose commands are ``ConvaeCommand`` unless one asks for another class."""

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or ConvaeCommand, **kwargs)
