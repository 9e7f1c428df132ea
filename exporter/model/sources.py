"""Renders tree -> titles. Directory names become paths and task names, so they are checked first."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from exporter.model.errors import LibraryError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}\Z")
SOURCE_NAME = "final.mp4"
METADATA_NAME = "metadata.json"
THUMBNAIL_NAME = "thumbnail.jpg"
# A title's files its exports are made from: every export task's file_dep (when present).
INPUT_NAMES = (SOURCE_NAME, METADATA_NAME, THUMBNAIL_NAME)


@dataclass(frozen=True, order=True)
class Title:
    """One render directory: renders/{segment}/{age}/{title_id}/."""

    segment: str
    age: str
    title_id: str
    directory: Path
    # renders=s3://...: the render downloaded for an export, and the object it is
    # (storage/renders.py); the directory's final.mp4 is then a note naming it
    fetched: Path | None = field(default=None, compare=False)
    remote: str | None = field(default=None, compare=False)
    remote_etag: str | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """'segment/age/title_id': how a title is named in messages and the exports tree."""
        return f"{self.segment}/{self.age}/{self.title_id}"

    @property
    def source(self) -> Path:
        return self.fetched or self.directory / SOURCE_NAME

    @property
    def origin(self) -> str:
        """Where the render is, as sidecars and error records say: its path, or its URL."""
        return self.remote or str(self.source)

    @property
    def metadata(self) -> Path:
        return self.directory / METADATA_NAME

    @property
    def thumbnail(self) -> Path:
        return self.directory / THUMBNAIL_NAME

    def export_dir(self, exports_root: Path | str) -> Path:
        return Path(exports_root, self.key)

    def input_problems(self) -> list[str]:
        """Why some of this title's input files cannot be read as files (empty: they can)."""
        root = self.directory.parent.parent.parent
        return [problem for problem in (input_file_problem(self.directory / name, root)
                                        for name in INPUT_NAMES) if problem]


FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
              (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
              (stat.S_ISBLK, "a block device"))


def input_file_problem(path: Path, renders_root: Path | str) -> str | None:
    """Why `path` cannot be an input (None: it is a regular file, or absent).

    Anything but a regular file (a FIFO, /dev/zero, a directory) would hang or break the
    hashing and probing of every later title. A link is followed only to a file inside the
    renders root: the rule for linked title directories too (`name_problem`).
    """
    name = path.name
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return f"{name} is a broken link" if os.path.islink(path) else None
    except OSError as error:
        return f"{name} cannot be read: {error.strerror}"
    if not stat.S_ISREG(mode):
        kind = next((text for test, text in FILE_KINDS if test(mode)), "a special file")
        return f"{name} is {kind}, not a regular file"
    if os.path.islink(path):
        target = path.resolve()
        if not target.is_relative_to(Path(renders_root).resolve()):
            return f"{name} links outside the renders root (to {target})"
    return None


@dataclass(frozen=True)
class Library:
    """The titles found, and the directories refused (one line each, naming the path)."""

    titles: list
    problems: list


def name_problem(path: Path, renders_root: Path | str, is_link: bool) -> str | None:
    """Why a directory cannot become a path or a task name, or None when it can."""
    name = path.name
    if not NAME_PATTERN.match(name) or ".." in name:
        return (f"{path.parent}/{name!r}: invalid directory name: use letters, digits, "
                "'-', '_', '.' (no leading dot, no '..', at most 128 characters)")
    if is_link:
        target = path.resolve()
        if not target.is_relative_to(Path(renders_root).resolve()):
            return f"{path}: symlink points outside the renders root (to {target})"
    return None


def subdirectories(directory: Path, renders_root: Path | str, problems: list[str],
                   reserved: Collection[str] = ()) -> list[Path]:
    """Acceptable child directories, sorted; refused ones are added to `problems`.

    Hidden entries (.git, .DS_Store) are skipped silently. os.scandir: the directory's own
    entry types answer is_dir and is_symlink, with no stat per child (10,000 titles).
    """
    with os.scandir(directory) as entries:
        found = sorted((entry for entry in entries
                        if not entry.name.startswith(".") and entry.is_dir()),
                       key=lambda entry: entry.name)
    children = []
    for entry in found:
        child = directory / entry.name
        problem = name_problem(child, renders_root, entry.is_symlink())
        if problem is None and entry.name in reserved:
            problem = (f"{child}: the name {entry.name!r} is taken by a file of the exports "
                       f"root ({', '.join(reserved)}); rename the directory")
        if problem:
            problems.append(problem)
        else:
            children.append(child)
    return children


def discover(renders_root: Path | str, reserved_segments: Collection[str] = ()) -> Library:
    """Every title under renders_root, sorted by (segment, age, title_id), as a Library.

    A title is any directory at depth three, with or without its final.mp4: a missing
    source is that export's error, reported with the others, not a silent skip. A bad
    directory name or a title id used twice refuses those directories only: the rest of
    the library still exports, and the run reports the problems and fails.
    """
    renders_root = Path(renders_root)
    if not renders_root.is_dir():
        raise LibraryError(f"{renders_root}: renders directory does not exist")
    problems, by_id = [], {}
    for segment in subdirectories(renders_root, renders_root, problems, reserved_segments):
        for age in subdirectories(segment, renders_root, problems):
            for directory in subdirectories(age, renders_root, problems):
                title = Title(segment.name, age.name, directory.name, directory)
                by_id.setdefault(title.title_id, []).append(title)
    titles = []
    for title_id, same_id in by_id.items():
        if len(same_id) > 1:
            paths = " and ".join(str(t.directory) for t in same_id)
            problems.append(f"duplicate title id {title_id!r}: {paths} (neither is exported)")
        else:
            titles.append(same_id[0])
    return Library(sorted(titles), sorted(problems))


def select(titles: Iterable[Title], segments: Collection[str] | None = None,
           ages: Collection[str] | None = None) -> list[Title]:
    """Titles whose segment and age are among those asked for (None means all)."""
    return [t for t in titles
            if (not segments or t.segment in segments) and (not ages or t.age in ages)]


def describe_library(titles: Iterable[Title]) -> str:
    """'women/18-23 (2 titles), men/24-30 (1 title)': what exists, for an empty selection."""
    counts = {}
    for title in titles:
        counts[(title.segment, title.age)] = counts.get((title.segment, title.age), 0) + 1
    return ", ".join(f"{seg}/{age} ({n} title{'s' if n != 1 else ''})"
                     for (seg, age), n in sorted(counts.items())) or "no titles"
