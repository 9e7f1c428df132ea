"""The terminal during a run: whether it shows a live display, and rich's Live display with
every other line of the run printed above it."""

import os
import sys
import threading


def is_live_terminal(stream):
    """True when `stream` is this process's stdout on an interactive terminal.

    Decided by isatty itself: FORCE_COLOR, often set on CI, must not bring the live
    display into a log. TERM=dumb or TTY_INTERACTIVE=0 (rich's switches) give plain lines.
    """
    try:
        if stream.fileno() != 1 or not os.isatty(1):
            return False
    except (AttributeError, OSError, ValueError):
        return False
    from rich.console import Console
    return Console(file=stream).is_interactive


class TerminalOwner:
    """rich's Live display, with every other line of the run printed above it.

    doit, the reporter and the `-n N` workers (separate processes) all write to file
    descriptors 1 and 2; a line reaching the terminal behind Live's back would be erased
    by its next redraw. So while it runs, the terminal's descriptors are pointed at a
    pipe whose lines a thread prints through the display (rich's own redirection replaces
    sys.stdout in this process only). stop() restores them before anything else prints.
    """

    def __init__(self):
        self.saved = {}
        self.reader = None
        self.live = None

    def start(self):
        from rich.console import Console
        from rich.live import Live
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = {fd: os.dup(fd) for fd in (1, 2) if os.isatty(fd)}
        terminal = open(self.saved[1], "w", encoding="utf-8", errors="replace", closefd=False)
        console = Console(file=terminal, force_terminal=True)
        self.live = Live(console=console, auto_refresh=False, transient=True,
                         redirect_stdout=False, redirect_stderr=False)
        self.live.start()
        read_fd, write_fd = os.pipe()
        for fd in self.saved:
            os.dup2(write_fd, fd)
        os.close(write_fd)
        self.reader = threading.Thread(target=self.print_lines, args=(read_fd,),
                                       name="reelexport-output", daemon=True)
        self.reader.start()

    def print_lines(self, read_fd):
        from rich.text import Text
        with open(read_fd, "rb") as pipe:
            for raw in pipe:
                text = raw.decode("utf-8", "replace").rstrip("\n")
                self.live.console.print(Text.from_ansi(text), soft_wrap=True)

    def show(self, renderable):
        self.live.update(renderable, refresh=True)

    def stop(self):
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in self.saved.items():
            os.dup2(saved, fd)      # drops this process's write end of the pipe
        # EOF comes when the workers' copies are gone too (they have exited by now).
        self.reader.join(timeout=2.0)
        self.live.stop()
        if not self.reader.is_alive():      # else a straggler still writes: leave it a way out
            for saved in self.saved.values():
                os.close(saved)
        self.saved = {}
