"""Ctrl-C and SIGTERM in a doit run and its `-n` workers: one interrupt, a clean stop."""

from __future__ import annotations

import multiprocessing
import signal
import time
from types import FrameType
from typing import NoReturn


def interrupt_once(signum: int, frame: FrameType | None) -> NoReturn:
    """Ctrl-C / SIGTERM handler: raise KeyboardInterrupt once, then ignore both signals.

    An interrupt reaches doit, its workers and ffmpeg together, and doit then sends its
    workers SIGTERM: a second interrupt landing inside a worker's cleanup would skip it
    and leave ffmpeg finishing a temporary file. One interrupt per process is enough.
    """
    # A Python no-op rather than SIG_IGN: a signal already caught at the C level when the
    # handler becomes SIG_IGN surfaces as "OSError: Signal 15 ignored due to race condition".
    signal.signal(signal.SIGINT, ignore_signal)
    signal.signal(signal.SIGTERM, ignore_signal)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def ignore_signal(signum: int, frame: FrameType | None) -> None:
    """Handler for the interrupts after the first: they change nothing."""


def stop_on_interrupt_once() -> None:
    """Install interrupt_once for SIGINT and SIGTERM (inherited by `doit -n` workers)."""
    signal.signal(signal.SIGINT, interrupt_once)
    signal.signal(signal.SIGTERM, interrupt_once)


def reap_workers(grace_s: float = 15.0) -> None:
    """Wait for `doit -n` workers still cleaning up after an interrupt, then kill stragglers.

    Python joins child processes at exit; a worker that never ends would hang the run
    after Ctrl-C. A killed straggler can leave a temporary, which the next run removes.
    """
    deadline = time.monotonic() + grace_s
    for child in multiprocessing.active_children():
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join()
