"""Running the documentation's examples (tests/test_docs.py): how a page is read and compared.

Every fenced block of a page is one of these, by its first line or its info string:

- **A shell session**: its first line starts with `$ `. Each `$ ` line is a command (lines
  starting with `> ` right after it continue it, as bash's second prompt shows); the lines up
  to the next `$ ` line are what it prints, stdout and stderr together as a terminal shows
  them. All the sessions of a page run in order in one bash, as a reader's terminal would
  (`cd`, `umask` and variables carry over), started in the repository root, each command's
  stdin `/dev/null`.
- **Exit status**: every command must exit 0, unless its line ends with a comment saying
  otherwise, `# exit N` (other words may come before `exit N` in that comment:
  `# refused: exit 3`). This is the one convention; a command may also print `$?` itself.
- **`python`**: run as a script by the session's bash (`python FILE`, same directory and
  environment); it must exit 0, and print what the block right after it shows when that
  block's info string is `output`, else nothing.
- **`json`**: a file a command of the page made, shown. The HTML comment just before the
  block names it, its schema, and the fields the page leaves out, if any (the page says so
  in its text):

      <!-- json: /tmp/demo/exports/registry.json schema=registry omit=exports[2:],totals.by_age -->

  (`at=encode.quality`: the block shows only the value at that dotted path.) In a JSON
  file, `event_id` (a random id) and a check's run time (`seconds`) are wildcards too.

  The file is validated against `schemas/{schema}.schema.json`, then compared with the
  block field by field: every field, except those named by `omit` (a dotted path; `[N:]`
  leaves out a list's items from N on, `[N:M]` from N to M, applied in order;
  `exports[1].quality` a field of one item).
- **`yaml`**, **`ini`**: must parse; a YAML document with a `name` is a whole platform file
  and is validated against `schemas/platform.schema.json`.
- **Anything else** (no info string, `text`): output or a picture, shown without its
  command; a line that reads as a command (its first word a program on `PATH`, or `doit`,
  `python`, `pip`, ...) fails the page: show it as a `$ ` command, or mark the block skipped.

A block that cannot run in CI is marked in the page, just before it, by an HTML comment
giving the reason, which must name the test that runs it instead, `tests/FILE.py::TEST`
(checked to exist):

    <!-- skip: next "runs until Ctrl-C: tests/test_watch.py::test_watch_exports_... runs it" -->

A page that runs nothing fails.

Compared as they are, but for what truly differs from run to run, replaced in the page and
in the output alike by a named wildcard: times (`<time>`), pids (`<pid>`), hashes
(`<sha256>`: 64 or 12 hex digits), run times (`in <seconds> s`), and runs of spaces (a
table's column widths follow its widest value). Sizes, counts and scores are compared as
printed: the docs run once, with the bundled ffmpeg (the test is marked `once`). An export's
size is fixed by its constant bitrate, though its bytes are not: x264's frame threads share
rate control by timing, so a busy machine gets other bytes (what a poster of it weighs is
left out for that); stills are made the same bytes on every CPU. There is no wildcard for lines: the page shows each line
printed. `/tmp/NAME` in a command is the test's copy of library NAME (examples/make_demo.py),
and the test's root reads as `/tmp` in what is printed; its exports root (REELEXPORT_EXPORTS)
as `data/exports` and its platform files (REELEXPORT_PLATFORMS) as `platforms`, the defaults a
reader's run prints.

`REELEXPORT_DOCS_UPDATE=1 pytest tests/test_docs.py -k PAGE` writes what each differing
command printed (and each differing JSON file) into its page instead of failing, for
review with `git diff`; an exit status, a skip or a block that cannot run is never
rewritten: those still fail.
"""

from __future__ import annotations

import configparser
import difflib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).resolve().parent.parent
PROMPT = "$ "
CONTINUATION = "> "
COMMAND_TIMEOUT_S = 300
EXIT = re.compile(r"#[^#'\"]*\bexit (\d+)\s*$")
FENCE = re.compile(r"^(```+)\s*([\w-]*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*(skip|json):\s*(.*?)\s*-->\s*$")
TEST_NAME = re.compile(r"\btests/(\w+\.py)::(\w+)")
# Words that start a command in a block that is not run (besides any program on PATH).
COMMAND_WORDS = {"doit", "python", "python3", "pip", "pytest", "lint-imports", "dask",
                 "openssl", "umask", "for", "export", "cd", "systemctl", "apt", "apt-get",
                 "eval", "aws", "ssh"}


@dataclass(frozen=True)
class Block:
    line: int                 # the page's line of the block's first content line
    info: str
    lines: tuple[str, ...]
    directive: tuple[str, str] | None   # (kind, argument) of the comment just before it


@dataclass(frozen=True)
class Command:
    line: int                 # in the page
    text: str                 # as the page shows it, after `$ ` (continuations joined)
    expected: tuple[str, ...]
    status: int               # the exit status the page gives it (0 unless `# exit N`)


def read_blocks(path: Path) -> list[Block]:
    """The page's fenced blocks, in order, each with the directive just before it."""
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks, at = [], 0
    while at < len(lines):
        opening = FENCE.match(lines[at])
        if not opening:
            at += 1
            continue
        fence, info = opening.groups()
        end = at + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        directive = DIRECTIVE.match(lines[at - 1]) if at else None
        blocks.append(Block(at + 2, info, tuple(lines[at + 1:end]),
                            directive.groups() if directive else None))
        at = end + 1
    return blocks


def parse_commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    current: list = []
    for offset, line in enumerate(block.lines):
        if line.startswith(PROMPT):
            current = [block.line + offset, line[len(PROMPT):], []]
            commands.append(current)
        elif current and line.startswith(CONTINUATION) and not current[2]:
            current[1] += "\n" + line[len(CONTINUATION):]
        elif current:
            current[2].append(line)
    result = []
    for line, text, expected in commands:
        status = EXIT.search(text.split("\n")[-1])
        result.append(Command(line, text, tuple(expected), int(status[1]) if status else 0))
    return result


def shell_blocks(path: Path) -> list[list[Command]]:
    """The page's shell sessions, parsed (skipped or not)."""
    return [parse_commands(b) for b in read_blocks(path) if b.lines and
            b.lines[0].startswith(PROMPT)]


# (pattern, replacement), applied in order to the page's lines and to the output alike:
# only what differs from run to run, each named.
NORMALISE = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?"), "<time>"),
    (re.compile(r"\b\d{8}T\d{6}(?:\.\d+)?\b"), "<time>"),
    (re.compile(r"\bpid \d+"), "pid <pid>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<sha256>"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "<sha256>"),
    (re.compile(r'"event_id": ?"[0-9a-f]{32}"'), '"event_id": "<id>"'),
    (re.compile(r"\bin \d+(?:\.\d+)? s\b"), "in <seconds> s"),
    (re.compile(r"[ \t]+"), " "),
]


def normalise(line: str) -> str:
    for pattern, replacement in NORMALISE:
        line = pattern.sub(replacement, line)
    return line.strip()


class Shell:
    """One bash for a page, fed a command at a time; each command's output and status."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=cwd, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT_S) -> tuple[int, str]:
        marker = f"docs-{uuid.uuid4().hex}"
        script = f"{{ :; {command}\n}} < /dev/null\nprintf '\\n{marker} %s\\n' \"$?\"\n"
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(script.encode())
        self.process.stdin.flush()
        output, deadline = b"", time.monotonic() + timeout
        found = None
        while found is None:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                return -1, output.decode(errors="replace") + f"\n(timed out after {timeout} s)"
            ready, _, _ = select.select([self.process.stdout], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                return -1, output.decode(errors="replace") + "\n(the shell ended)"
            output += chunk
            found = re.search(rb"\n" + marker.encode() + rb" (\d+)\n", output)
        return int(found[1]), output[:found.start()].decode(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()


@dataclass
class Session:
    """The state one page's examples share: where the libraries are, the environment."""

    root: Path
    env: dict[str, str]
    libraries: tuple[str, ...]
    ran: dict[str, int] = field(default_factory=lambda: {"commands": 0, "python": 0,
                                                          "json": 0})
    skipped: list[tuple[int, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    # (first line of the shown output in the page, how many lines, the lines to write)
    updates: list[tuple[int, int, list[str]]] = field(default_factory=list)
    rewritable: list[str] = field(default_factory=list)   # the failures updates fix
    shell: Shell | None = None

    def command(self, text: str) -> str:
        """The page's command, its `/tmp/NAME` libraries moved under this session's root."""
        names = "|".join(map(re.escape, self.libraries))
        return re.sub(rf"/tmp/({names})(?![\w.-])", lambda m: f"{self.root}/{m[1]}", text)

    def printed(self, output: str) -> str:
        """What a command printed, with this session's paths as the page writes them."""
        exports = self.env.get("REELEXPORT_EXPORTS")
        if exports:
            output = output.replace(exports, "data/exports")
        platforms = self.env.get("REELEXPORT_PLATFORMS")
        if platforms:   # the shipped files, shrunk: a reader's are `platforms/` (the default)
            output = output.replace(platforms, "platforms")
        return output.replace(str(self.root), "/tmp")

    def run(self, text: str) -> tuple[int, str]:
        if self.shell is None:
            self.shell = Shell(REPO, self.env)
        status, output = self.shell.run(self.command(text))
        if status == -1:
            self.shell.close()
            self.shell = None
        return status, self.printed(output)


def trimmed(lines: list[str]) -> list[str]:
    lines = list(lines)
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def compare(session: Session, where: str, shown: tuple[str, ...], printed: str,
            first_line: int) -> None:
    actual = trimmed([normalise(line) for line in printed.splitlines()])
    expected = trimmed([normalise(line) for line in shown])
    if actual != expected:
        diff = "\n".join(difflib.unified_diff(expected, actual, "the page", "printed now",
                                              lineterm=""))
        session.failures.append(f"{where}\n{diff}\n--- printed now, as is:\n{printed}")
        session.rewritable.append(session.failures[-1])
        session.updates.append((first_line, len(shown), printed.rstrip("\n").split("\n")
                                if printed.strip() else []))


def run_shell(session: Session, path: Path, block: Block) -> None:
    for command in parse_commands(block):
        session.ran["commands"] += 1
        status, printed = session.run(command.text)
        where = f"{path.name}:{command.line}: $ {command.text}"
        if status != command.status:
            session.failures.append(f"{where}\nexited {status}; the page says {command.status}"
                                    f" (`# exit N` on the command's line)\n{printed}")
        compare(session, where, command.expected, printed,
                command.line + 1 + command.text.count("\n"))


def run_python(session: Session, path: Path, block: Block, output: Block | None) -> None:
    session.ran["python"] += 1
    script = session.root / f".docs-{path.stem}-{block.line}.py"
    script.write_text(session.command("\n".join(block.lines)) + "\n", encoding="utf-8")
    status, printed = session.run(f"python {script}")
    where = f"{path.name}:{block.line}: the Python block"
    if status != 0:
        session.failures.append(f"{where}\nexited {status}\n{printed}")
    if output is None and printed.strip():
        session.failures.append(f"{where} printed, and no `output` block follows it:\n{printed}")
    elif output is not None:
        compare(session, where, output.lines, printed, output.line)


def omit(document, dotted: str) -> None:
    """Remove one dotted path (`a.b`, `a.b[2:]`) from a parsed JSON document."""
    *parents, last = dotted.split(".")
    for key in parents:
        indexed = re.fullmatch(r"(\w+)\[(\d+)\]", key)
        document = document[indexed[1]][int(indexed[2])] if indexed else document[key]
    sliced = re.fullmatch(r"(\w+)\[(\d+):(\d*)\]", last)
    if sliced:
        del document[sliced[1]][int(sliced[2]):int(sliced[3]) if sliced[3] else None]
    else:
        del document[last]


def normalised_json(value):
    if isinstance(value, dict):     # how long a check took: `"seconds": <seconds>`
        return {key: "<seconds>" if key == "seconds" else normalised_json(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [normalised_json(item) for item in value]
    if isinstance(value, str):
        return normalise(value)
    return value


def differences(shown, real, where: str = "") -> list[str]:
    if isinstance(shown, dict) and isinstance(real, dict):
        found = []
        for key in sorted(set(shown) | set(real)):
            if key not in real:
                found.append(f"{where}.{key}: on the page, not in the file")
            elif key not in shown:
                found.append(f"{where}.{key}: in the file, not on the page (or omit=)")
            else:
                found += differences(shown[key], real[key], f"{where}.{key}")
        return found
    if isinstance(shown, list) and isinstance(real, list) and len(shown) == len(real):
        return [d for i, (s, r) in enumerate(zip(shown, real))
                for d in differences(s, r, f"{where}[{i}]")]
    return [] if shown == real else [f"{where or '.'}: the page {json.dumps(shown)}, "
                                     f"the file {json.dumps(real)}"]


def compact_json(value) -> str:
    """JSON with two-space indents and every innermost object or list on one line."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return re.sub(r"[\[{][^\[\]{}]*[\]}]", lambda m: " ".join(m[0].split()), text)


def check_json(session: Session, path: Path, block: Block) -> None:
    where = f"{path.name}:{block.line}: the JSON block"
    if not block.directive or block.directive[0] != "json":
        session.failures.append(f"{where} names no file: <!-- json: PATH schema=NAME -->")
        return
    session.ran["json"] += 1
    words = block.directive[1].split()
    options = dict(word.split("=", 1) for word in words[1:])
    source = session.command(words[0])
    exports = session.env.get("REELEXPORT_EXPORTS")
    if exports and source.startswith("data/exports/"):
        source = exports + source[len("data/exports"):]
    try:
        real = json.loads(Path(source).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        session.failures.append(f"{where}: {words[0]}: {error}")
        return
    schema = json.loads((REPO / "schemas" / f"{options['schema']}.schema.json").read_text())
    problems = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                for e in jsonschema.validators.validator_for(schema)(schema).iter_errors(real)]
    if problems:
        session.failures.append(f"{where}: {words[0]} breaks its schema: {problems}")
    real = json.loads(session.printed(json.dumps(real)))
    for key in filter(None, options.get("at", "").split(".")):
        real = real[key]
    for dotted in filter(None, options.get("omit", "").split(",")):
        omit(real, dotted)
    try:
        shown = json.loads("\n".join(block.lines))
    except ValueError as error:
        session.failures.append(f"{where}: not JSON ({error})")
        shown = None
    found = differences(normalised_json(shown), normalised_json(real))
    if found:
        session.failures.append(f"{where} is not {words[0]}:\n" + "\n".join(found))
        session.rewritable.append(session.failures[-1])
        session.updates.append((block.line, len(block.lines), compact_json(real).split("\n")))


def looks_like_a_command(line: str) -> bool:
    words = line.split()
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words.pop(0)
    return bool(words) and (words[0] in COMMAND_WORDS or (
        re.fullmatch(r"[\w.-]+", words[0]) is not None and shutil.which(words[0]) is not None))


def check_other(session: Session, path: Path, block: Block) -> None:
    where = f"{path.name}:{block.line}"
    text = "\n".join(block.lines)
    if block.info == "yaml":
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            session.failures.append(f"{where}: the YAML does not parse: {error}")
            return
        if isinstance(document, dict) and "name" in document:
            schema = json.loads((REPO / "schemas/platform.schema.json").read_text())
            for error in jsonschema.validators.validator_for(schema)(schema).iter_errors(
                    document):
                session.failures.append(f"{where}: not a valid platform file: {error.message}")
    elif block.info == "ini":
        try:
            configparser.ConfigParser(strict=True, interpolation=None).read_string(text)
        except configparser.Error as error:
            session.failures.append(f"{where}: the unit does not parse: {error}")
    else:
        for offset, line in enumerate(block.lines):
            if looks_like_a_command(line):
                session.failures.append(
                    f"{path.name}:{block.line + offset}: a command shown without `$ `, never "
                    f"run: {line.strip()!r} (show it as `$ ` and its output, or skip the block "
                    "naming the test that runs it)")


def check_skip(session: Session, path: Path, block: Block) -> None:
    reason = block.directive[1]
    session.skipped.append((block.line, reason))
    if "..." in (line.strip() for line in block.lines):
        session.failures.append(f"{path.name}:{block.line}: a `...` line: show every line "
                                "(or fewer commands), even in a block that does not run")
    named = TEST_NAME.search(reason)
    if not named:
        session.failures.append(f"{path.name}:{block.line}: the skip names no test that runs "
                                f"the block instead (tests/FILE.py::TEST): {reason}")
        return
    test_file = REPO / "tests" / named[1]
    if not test_file.is_file() or not re.search(rf"^\s*(?:async )?def {named[2]}\(",
                                                test_file.read_text(encoding="utf-8"),
                                                re.MULTILINE):
        session.failures.append(f"{path.name}:{block.line}: the skip names a test that does "
                                f"not exist: tests/{named[1]}::{named[2]}")


def run_page(path: Path, session: Session) -> Session:
    """Every example of the page, in order; failures, skips and updates kept in the session."""
    blocks = read_blocks(path)
    try:
        for index, block in enumerate(blocks):
            if block.info == "output" and index and blocks[index - 1].info == "python":
                continue
            if block.directive and block.directive[0] == "skip":
                check_skip(session, path, block)
            elif block.lines and block.lines[0].startswith(PROMPT):
                run_shell(session, path, block)
            elif block.info == "python":
                following = blocks[index + 1] if index + 1 < len(blocks) else None
                run_python(session, path, block,
                           following if following and following.info == "output" else None)
            elif block.info == "json":
                check_json(session, path, block)
            elif block.info == "output":
                session.failures.append(f"{path.name}:{block.line}: an `output` block after "
                                        "no Python block")
            else:
                check_other(session, path, block)
    finally:
        if session.shell:
            session.shell.close()
    if not sum(session.ran.values()):
        session.failures.append(f"{path.name} runs nothing: no command, Python or JSON block")
    return session


def write_updates(path: Path, session: Session) -> None:
    """Each differing output, as printed now, in place of the page's."""
    lines = path.read_text(encoding="utf-8").split("\n")
    for first, count, printed in sorted(session.updates, reverse=True):
        shown = lines[first - 1:first - 1 + count]
        while shown and not shown[-1].strip():    # the page's blank lines are kept
            shown.pop()
        lines[first - 1:first - 1 + len(shown)] = printed
    path.write_text("\n".join(lines), encoding="utf-8")
