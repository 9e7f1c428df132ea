"""One logger per module (`logging.getLogger(__name__)`), one handler for the run: each
message a plain line on the standard error of the moment."""

from __future__ import annotations

import logging
import signal
import sys
from typing import TextIO


class CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is logged: doit swaps it while a task's
    action runs, and the line must go where a direct write would."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass        # StreamHandler.__init__ sets it; the current sys.stderr is always used


def configure() -> None:
    """Send the `exporter` loggers' lines to stderr as they are (idempotent)."""
    logger = logging.getLogger("exporter")
    if any(isinstance(handler, CurrentStderr) for handler in logger.handlers):
        return
    handler = CurrentStderr()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def quiet_on_closed_pipe() -> None:
    """A reader that stops early (`doit list | head`) ends the command quietly, as Unix
    tools end: by SIGPIPE's default action, not a BrokenPipeError traceback."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
