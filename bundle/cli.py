"""The command lines' fire runner: the arguments are parsed and checked before the job starts.

Fire alone calls the function first and complains about what it could not use afterwards, and a function with
``**overrides`` takes ``--help`` and any misspelt flag as config overrides. :func:`run_fire` parses the command line
against the function's signature without running it, shows help for ``--help`` / ``-h``, refuses flags that fire
cannot place and overrides that ``check`` does not know, and only then calls the function.
:func:`run_fire_commands` does the same for a command line with subcommands (``evaluate.py decode ...``).
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

HELP_FLAGS = ("--help", "-h")


def run_fire(
    function: Callable[..., Any],
    argv: Sequence[str] | None = None,
    *,
    name: str | None = None,
    check: Callable[[Mapping[str, Any], Mapping[str, Any]], Sequence[str]] | None = None,
    user_errors: tuple[type[BaseException], ...] = (),
    subcommand: str | None = None,
) -> int:
    """Run ``function`` with the command line ``argv`` (default ``sys.argv[1:]``) parsed by fire; the exit status.

    ``check(arguments, overrides)`` gets the named parameters and the ``**overrides`` of the call and returns the
    override names it does not know; any stops the command (exit status 2) before ``function`` runs. ``user_errors``
    raised by the job end it with one line on stderr and exit status 2 (other errors propagate). The function's
    return value is not printed. ``subcommand``: ``function`` is that command of ``name`` (help and usage say
    ``name subcommand``)."""
    from fire.core import FireExit

    argv = list(sys.argv[1:] if argv is None else argv)
    name = name or sys.argv[0].rpartition("/")[2] or function.__name__
    own_args = argv[: argv.index("--")] if "--" in argv else argv
    try:
        if any(flag in own_args for flag in HELP_FLAGS):
            print(help_text(function, name, subcommand))
            return 0
        call = parse_call(function, argv, name, subcommand)
    except FireExit as stop:
        return int(stop.code or 0)
    args, kwargs = call
    parameters = inspect.signature(function).parameters
    overrides = {key: value for key, value in kwargs.items() if key not in parameters}
    try:
        unknown = list(check(kwargs, overrides)) if check is not None and overrides else []
        if unknown:
            flags = ", ".join(f"--{key}" for key in unknown)
            print(
                f"{name}: error: unknown flag(s) {flags} (not a parameter or a known config id); see --help",
                file=sys.stderr,
            )
            return 2
        function(*args, **kwargs)
    except user_errors as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    return 0


def run_fire_commands(
    commands: Mapping[str, Callable[..., Any]],
    argv: Sequence[str] | None = None,
    *,
    name: str | None = None,
    user_errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Run the subcommand named by the first argument of ``argv`` through :func:`run_fire` (the rest of ``argv`` is
    its command line); the exit status. No argument, or ``--help`` / ``-h`` first, lists the commands (exit status 2
    and 0); an unknown command is refused with exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = name or sys.argv[0].rpartition("/")[2].removesuffix(".py") or "command"
    if not argv or argv[0] in HELP_FLAGS:
        print(commands_text(commands, name), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command = commands.get(argv[0])
    if command is None:
        print(f"{name}: error: unknown command {argv[0]!r}; one of {', '.join(commands)}", file=sys.stderr)
        return 2
    return run_fire(command, argv[1:], name=name, user_errors=user_errors, subcommand=argv[0])


def commands_text(commands: Mapping[str, Callable[..., Any]], name: str) -> str:
    """The commands of ``name``, each with the first line of its docstring."""
    width = max(len(command) for command in commands)
    lines = [f"usage: {name} COMMAND [--flags]   ({name} COMMAND --help: its flags)", "", "commands:"]
    for command, function in commands.items():
        summary = (inspect.getdoc(function) or "").split("\n", 1)[0]
        lines.append(f"  {command:<{width}}  {summary}")
    return "\n".join(lines)


def help_text(function: Callable[..., Any], name: str, subcommand: str | None = None) -> str:
    """Fire's help for ``function`` (its docstring, flags and defaults), for stdout: fire itself prints help on
    stderr through a pager."""
    from fire import helptext, trace

    if subcommand is None:
        return helptext.HelpText(function, trace=trace.FireTrace(function, name=name))
    command_trace = trace.FireTrace({subcommand: function}, name=name)
    command_trace.AddAccessedProperty(function, subcommand, [subcommand], None, None)
    return helptext.HelpText(function, trace=command_trace)


def parse_call(
    function: Callable[..., Any], argv: Sequence[str], name: str, subcommand: str | None = None
) -> tuple[tuple, dict[str, Any]]:
    """The positional and keyword arguments fire would call ``function`` with for ``argv``, without calling it.

    An argument fire cannot place (a surplus value, a missing required one) raises fire's ``FireExit`` with status 2
    after printing its usage text."""
    import fire

    captured: dict[str, Any] = {}

    @functools.wraps(function)
    def capture(*args: Any, **kwargs: Any) -> None:
        captured.update(args=args, kwargs=kwargs)

    if subcommand is None:
        fire.Fire(capture, command=list(argv), name=name, serialize=lambda _: None)
    else:
        fire.Fire({subcommand: capture}, command=[subcommand, *argv], name=name, serialize=lambda _: None)
    return tuple(captured.get("args", ())), dict(captured.get("kwargs", {}))
