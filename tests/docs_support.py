"""Running the documentation's shell examples (tests/test_docs.py), with Sybil.

A shell example is a fenced code block whose first line starts with `$ `. Each `$ ` line is
one command, run by bash from the repository root; the lines up to the next `$ ` line are
what it prints (stdout and stderr, as a terminal shows them). A line `...` stands for any
number of lines. Commands see the libraries of examples/make_demo.py: `/tmp/NAME` in a
command is the test's copy of library NAME, and the test's root reads as `/tmp` in what
they print.

A block that cannot run here is marked in the page source, with its reason, by an HTML
comment just before it (Sybil's skip directive):

    <!-- skip: next "runs until Ctrl-C: tests/test_watch.py runs doit watch" -->

What legitimately differs from run to run is normalised in both the page and the output
before they are compared: timestamps, pids, hashes, sizes and run times, and runs of
spaces (a table's column widths follow its widest value).

`REELEXPORT_DOCS_UPDATE=1 pytest tests/test_docs.py` writes what each differing command
printed into its page instead of failing (review the change with `git diff docs`: a `...`
line the page had is written out in full).
"""

from __future__ import annotations

import difflib
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import SkipTest

from sybil import Document, Region
from sybil.example import Example
from sybil.parsers.markdown import SkipParser
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

REPO = Path(__file__).resolve().parent.parent
PROMPT = "$ "
ANY_LINES = "..."
COMMAND_TIMEOUT_S = 300


@dataclass(frozen=True)
class Command:
    line: int                 # in the page
    text: str                 # as the page shows it, after `$ `
    expected: tuple[str, ...]


@dataclass
class Session:
    """The state one page's examples share: where the libraries are, the environment."""

    root: Path
    env: dict[str, str]
    libraries: tuple[str, ...]
    ran: list[Command] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    # (first line of the output in the page, how many lines, what was printed)
    updates: list[tuple[int, int, list[str]]] = field(default_factory=list)

    def command(self, text: str) -> str:
        """The page's command, its `/tmp/NAME` libraries moved under this session's root."""
        names = "|".join(map(re.escape, self.libraries))
        return re.sub(rf"/tmp/({names})(?![\w.-])", lambda m: f"{self.root}/{m[1]}", text)

    def printed(self, output: str) -> str:
        """What a command printed, with this session's paths as the page writes them."""
        exports = self.env.get("REELEXPORT_EXPORTS")
        if exports:
            output = output.replace(exports, "data/exports")
        return output.replace(str(self.root), "/tmp")


# (pattern, replacement), applied in order to the page's lines and to the output alike
NORMALISE = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?"), "<time>"),
    (re.compile(r"\b\d{8}T\d{6}\b"), "<time>"),
    (re.compile(r"\bpid \d+"), "pid <pid>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<sha256>"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "<sha256>"),
    (re.compile(r"\b\d+(?:\.\d+)? (?:B|kB|MB|GB)\b"), "<size>"),
    (re.compile(r"\b\d+ bytes\b"), "<n> bytes"),
    (re.compile(r'"size_bytes": \d+'), '"size_bytes": <n>'),
    (re.compile(r"\bin \d+(?:\.\d+)? s\b"), "in <t> s"),
    # perceptual scores: the same bytes score the same, but libvmaf's last digit may follow
    # the CPU's vector unit
    (re.compile(r"\b\d+(?:\.\d+)?/\d+(?:\.\d+)?/\d+(?:\.\d+)?\b"), "<scores>"),
    # which exports lead the colour check: several sit within a rounding of one another (the
    # four platforms of one render), and the third decimal decides which three are named
    (re.compile(r"highest colour ΔE \(mean/worst\): .*"),
     "highest colour ΔE (mean/worst): <exports>"),
    (re.compile(r'"(mean|median|p5|worst)": \d+(?:\.\d+)?'), r'"\1": <score>'),
    (re.compile(r"[ \t]+"), " "),
]


def normalise(line: str) -> str:
    for pattern, replacement in NORMALISE:
        line = pattern.sub(replacement, line)
    return line.strip()


def matches(expected: Iterable[str], actual: Iterable[str]) -> bool:
    """Line by line, `...` standing for any number of lines."""
    pattern = "".join(r"(?:[^\n]*\n)*?" if line == ANY_LINES else re.escape(line) + "\n"
                      for line in expected)
    return re.fullmatch(pattern, "".join(line + "\n" for line in actual)) is not None


def parse_commands(source: str, first_line: int) -> list[Command]:
    commands: list[Command] = []
    current: tuple[int, str] | None = None
    expected: list[str] = []
    for offset, line in enumerate(source.splitlines()):
        if line.startswith(PROMPT):
            if current:
                commands.append(Command(*current, tuple(expected)))
            current, expected = (first_line + offset, line[len(PROMPT):]), []
        elif current:
            expected.append(line)
    if current:
        commands.append(Command(*current, tuple(expected)))
    return commands


def evaluate_block(example: Example) -> str | None:
    session: Session = example.namespace["session"]
    for command in example.parsed:
        session.ran.append(command)
        result = subprocess.run(["bash", "-c", session.command(command.text)], check=False,
                                cwd=REPO, env=session.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                timeout=COMMAND_TIMEOUT_S)
        actual = [normalise(line) for line in session.printed(result.stdout).splitlines()]
        expected = [normalise(line) for line in command.expected]
        while actual and not actual[-1]:
            actual.pop()
        while expected and not expected[-1]:
            expected.pop()
        if not matches(expected, actual):
            diff = "\n".join(difflib.unified_diff(expected, actual, "the page", "printed now",
                                                  lineterm=""))
            session.failures.append(
                f"{example.path}:{command.line}: $ {command.text}\n{diff}\n"
                f"--- printed now, as is:\n{session.printed(result.stdout)}")
            printed = session.printed(result.stdout).rstrip("\n").splitlines()
            session.updates.append((command.line + 1, len(command.expected), printed))
    return None


class ShellBlockParser:
    """Sybil parser: the fenced blocks whose first line is a `$ ` command."""

    def __init__(self) -> None:
        self.lexer = RawFencedCodeBlockLexer(
            info_pattern=re.compile(r"(?P<language>[\w-]*)$\n", re.MULTILINE))

    def __call__(self, document: Document) -> Iterable[Region]:
        for lexed in self.lexer(document):
            source = lexed.lexemes["source"]
            if not source.startswith(PROMPT):
                continue
            first_line = document.text.count("\n", 0, lexed.start) + 2
            yield Region(lexed.start, lexed.end, parse_commands(source, first_line),
                         evaluate_block)


def run_page(path: Path, session: Session) -> Session:
    """Every shell example of the page, in order; failures and skips kept in the session."""
    document = Document.parse(str(path), SkipParser(), ShellBlockParser())
    document.namespace["session"] = session
    for example in document:
        try:
            example.evaluate()
        except SkipTest as skip:
            if example.region.evaluator is evaluate_block:
                session.skipped.append((example.line, str(skip)))
    return session


def write_updates(path: Path, session: Session) -> None:
    """Each differing command's output, as printed now, in place of the page's."""
    lines = path.read_text(encoding="utf-8").split("\n")
    for first, count, printed in sorted(session.updates, reverse=True):
        expected = lines[first - 1:first - 1 + count]
        while expected and not expected[-1].strip():    # the page's blank lines are kept
            expected.pop()
        lines[first - 1:first - 1 + len(expected)] = printed
    path.write_text("\n".join(lines), encoding="utf-8")


def shell_blocks(path: Path) -> list[list[Command]]:
    """The page's shell examples, parsed (skipped or not)."""
    document = Document.parse(str(path), ShellBlockParser())
    return [example.parsed for example in document]
