"""The base of reelexport's own doit commands (`status`, `history`, `uploaded`, `watch`).

Each starts the same way: the `exporter` loggers as plain lines on stderr, a closed pipe
(`doit status | head`) ending quietly, and its positional arguments checked with one line
saying what it takes. Its options are declared as data with `flag` and `value`.
"""

from __future__ import annotations

import sys
from typing import Any

from doit.cmd_base import Command
from doit.cmdparse import CmdParseError

from exporter.model.errors import ExportError
from exporter.model.logs import configure as configure_logging
from exporter.model.logs import quiet_on_closed_pipe


def flag(name: str, help: str, long: str | None = None) -> dict[str, Any]:
    """A `--name` switch, False unless given."""
    return {"name": name, "short": "", "long": long or name, "type": bool, "default": False,
            "help": help}


def value(name: str, help: str, long: str | None = None, default: Any = "",
          type: type = str, short: str = "") -> dict[str, Any]:
    """A `--name VALUE` option."""
    return {"name": name, "short": short, "long": long or name, "type": type,
            "default": default, "help": help}


class ExportCommand(Command):
    """A doit command of reelexport: subclasses set `names` and implement `run`."""

    # How many positional names the command takes, and how a message describes them:
    # (0, "") takes none; (1, "one export (youtube:my-story)") takes exactly one.
    names: tuple[int, str] = (0, "")
    # What a command taking no names says to use instead.
    select_with = "select with segment=, age= and platforms="

    def parse_execute(self, in_args: list[str]) -> Any:
        """A name may come before or after the options: doit parses options only up to the
        first positional argument (`doit uploaded youtube:x --id 1`)."""
        if self.names[0] and in_args and not in_args[0].startswith("-"):
            in_args = [*in_args[1:], in_args[0]]
        return super().parse_execute(in_args)

    def execute(self, params: dict[str, Any], args: list[str]) -> int:
        configure_logging()
        quiet_on_closed_pipe()
        count, described = self.names
        if len(args) != count:
            if count == 0:
                raise CmdParseError(f"doit {self.name} takes no task names "
                                    f"({' '.join(args)}); {self.select_with}")
            raise CmdParseError(f"doit {self.name} takes {described}")
        try:
            return self.run(params, args)
        except ExportError as error:    # a file it reads or writes (history.jsonl): its cause
            sys.stderr.write(f"reelexport: doit {self.name}: {error}\n")
            return 3

    def run(self, params: dict[str, Any], args: list[str]) -> int:
        raise NotImplementedError
