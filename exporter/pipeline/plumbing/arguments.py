"""doit's command line, read the way reelexport's commands document it.

doit (`DoitMain.process_args`, doit 0.37) takes every `NAME=VALUE` item of the command line
for a variable, wherever it stands, and looks at `arg[0]` of each. So the URL of
`doit uploaded youtube:x --id 1 --url 'https://www.facebook.com/watch/?v=123'` became a
variable named `https://www.facebook.com/watch/?v` (and `--url` lost its value), and an
empty argument (`doit ''`) was an IndexError traceback. `install()` (called by the loader
module, which doit imports before it reads the arguments) replaces that reading with one
that differs in three ways only:

- the item after an option that takes a value (`--url`, `--id`, `-n`, `--db-file`, ...,
  as the command in question declares them) is that value, never a variable;
- a variable is `NAME=VALUE` with NAME an identifier (`segment=women`, `platforms=a,b`),
  before or after the command's name, as before; any other item holding `=` is an argument
  of the command (which then says what it takes) rather than dropped as a variable;
- an empty argument, outside an option's value, is one line on stderr and exit 3, the
  status doit gives its other command-line errors.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from doit import doit_cmd
from doit.cmd_base import DodoTaskLoader, DoitCmdBase

from exporter.model.variables import exports_named

RUN = "run"


def is_variable(arg: str) -> bool:
    """`NAME=VALUE` with NAME an identifier: what doit's `get_var` is asked for."""
    name, sep, _ = arg.partition("=")
    return bool(sep) and name.isidentifier()


def value_options(command: Any) -> tuple[set[str], dict[str, bool]]:
    """The options of a doit command class: (short letters that take a value, every long
    name -> whether it takes a value). An option takes one unless its type is bool."""
    options: list[dict[str, Any]] = list(getattr(command, "cmd_options", ()))
    if isinstance(command, type) and issubclass(command, DoitCmdBase):
        options += [*command.base_options, *DodoTaskLoader.cmd_options]
    short: set[str] = set()
    long: dict[str, bool] = {}
    for option in options:
        value = option.get("type", str) is not bool
        if value and option.get("short"):
            short.add(option["short"])
        if option.get("long"):
            long[option["long"]] = value
        if option.get("inverse"):
            long[option["inverse"]] = False
    return short, long


def takes_value(arg: str, short: set[str], long: dict[str, bool]) -> bool:
    """True when option `arg` (as typed) takes the next item as its value: `--url`, a
    unique prefix of it (getopt accepts one), `-n`, or a cluster of short flags ending
    with such a letter (`-sn`)."""
    if arg.startswith("--"):
        name = arg[2:]
        if "=" in name or not name:
            return False
        if name in long:
            return long[name]
        matches = [option for option in long if option.startswith(name)]
        return len(matches) == 1 and long[matches[0]]
    for position, letter in enumerate(arg[1:], start=1):
        if letter in short:
            return position == len(arg) - 1     # else the rest of the item is the value
    return False


def split_args(args: Iterable[str], commands: Any) -> tuple[dict[str, str], list[str]]:
    """(variables, the other items in order) of a command line after the loader's options;
    `commands` is doit's PluginDict of command classes. SystemExit(3) on an empty argument."""
    variables: dict[str, str] = {}
    rest: list[str] = []
    short: set[str] = set()
    long: dict[str, bool] = {}
    command = None          # not known until the first item that is not a variable
    value_next = False
    for position, arg in enumerate(args, start=1):
        if value_next:
            rest.append(arg)            # an option's value, whatever it holds
            value_next = False
            continue
        if arg == "":
            sys.stderr.write(f"ERROR: argument {position} is empty: doit takes no empty "
                             "command, task name, option or variable\n")
            raise SystemExit(3)
        if not arg.startswith("-") and is_variable(arg):
            name, _, value = arg.partition("=")
            variables[name] = value
            continue
        if command is None:
            command = arg if arg in commands else RUN
            short, long = value_options(commands.get_plugin(command))
            if command != RUN or arg == RUN:
                rest.append(arg)
                continue
        if arg.startswith("-"):
            value_next = takes_value(arg, short, long)
        rest.append(arg)
    return variables, rest


def exports_to_prove(argv: list[str], environ: Any) -> str | None:
    """The exports root whose stamp a `doit` or `doit list` command line (sys.argv) will
    check, read before doit reads it (a guess the loader confirms:
    exporter.pipeline.export.output_states); None for other commands and programs (the
    loader imported by a test), and for a bucket (its local tree is the settings' to find)."""
    program, args = (argv[0] if argv else ""), argv[1:]
    if not (program.endswith("/doit") or program == "doit"
            or program.endswith("/doit/__main__.py")):
        return None
    variables = [arg for arg in args if not arg.startswith("-") and is_variable(arg)]
    first = next((arg for arg in args if arg not in variables), None)
    if (first not in (None, RUN, "list") and not first.startswith("-")
            or first in ("--help", "--version")):     # doit answers these, loading nothing
        return None
    exports = exports_named(variables, environ)
    return None if exports.startswith("s3://") else exports


def process_args(self: doit_cmd.DoitMain, cmd_args: list[str]) -> list[str]:
    """DoitMain.process_args as reelexport reads a command line (see the module's doc)."""
    doit_cmd.reset_vars()
    variables, rest = split_args(cmd_args, self.get_cmds())
    for name, value in variables.items():
        doit_cmd.set_var(name, value)
    return rest


def install() -> None:
    doit_cmd.DoitMain.process_args = process_args
