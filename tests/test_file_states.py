"""The exports' states the stamp proves a no-op by (output_states.outputs_digests): read through
statx into one buffer (model/file_states.py) where libc has it, by os.stat elsewhere. Both
must see every change of a file's bytes or presence, and nothing else."""

import functools
import os
import shutil
import sys

import pytest

from exporter.model.file_states import STATX, OsStatStates, directory_states
from exporter.pipeline.export.output_states import (
    absent_files,
    outputs_digests,
)

# The tool's bookkeeping, not ffmpeg: run once, in the first pass (README: Test).
pytestmark = pytest.mark.once

NAMES = ["youtube.mp4", "youtube.export.json", "tiktok.mp4"]
READERS = [pytest.param(outputs_digests, id="statx"),
           pytest.param(functools.partial(outputs_digests, reader_of=OsStatStates),
                        id="os.stat")]


def in_place(path, data):
    """`dd conv=notrunc`, the file's mtime put back: only its ctime tells."""
    state = path.stat()
    with open(path, "r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(state.st_atime_ns, state.st_mtime_ns))


def touched(path):
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))


def replaced_by_a_twin(path):
    """The same bytes under the same name, by rename: a new inode."""
    twin = path.with_name(".twin")
    shutil.copy2(path, twin)
    os.replace(twin, path)


def removed(path):
    path.unlink()


def read_only(path):
    path.chmod(0o444)


CHANGES = {
    "written in place": lambda path: in_place(path, b"VIDEO"),
    "touched": touched,
    "replaced by a twin": replaced_by_a_twin,
    "removed": removed,
    "made read-only": read_only,
}


@pytest.fixture
def exports(tmp_path):
    for title in ("s/a/one", "s/a/two"):
        (tmp_path / title).mkdir(parents=True)
        for name in NAMES[:2]:
            (tmp_path / title / name).write_bytes(b"video" + name.encode())
    return tmp_path


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("change", CHANGES)
def test_every_change_of_one_file_shows_in_its_title_alone(exports, reader, change):
    keys = ["s/a/one", "s/a/two"]
    before = reader(str(exports), keys, NAMES)
    assert reader(str(exports), keys, NAMES) == before, "read again, unchanged"
    CHANGES[change](exports / "s/a/two/youtube.export.json")
    after = reader(str(exports), keys, NAMES)
    assert after["s/a/one"] == before["s/a/one"]
    assert after["s/a/two"] != before["s/a/two"]


@pytest.mark.parametrize("reader", READERS)
def test_missing_files_and_folders_are_named(exports, reader, tmp_path):
    (exports / "s/a/two/loop").symlink_to("loop")
    digests = reader(str(exports), ["s/a/one", "s/a/two", "s/a/gone"],
                     [*NAMES, "loop"])
    assert absent_files(digests["s/a/one"], NAMES) == {"tiktok.mp4", "loop"}
    assert absent_files(digests["s/a/two"], NAMES) == {"tiktok.mp4", "loop"}
    assert digests["s/a/gone"].startswith("no folder")
    assert absent_files(digests["s/a/gone"], NAMES) == set(NAMES)
    (exports / "s/a/one/tiktok.mp4").write_bytes(b"video")
    (exports / "s/a/one/loop").write_bytes(b"video")
    assert absent_files(reader(str(exports), ["s/a/one"], [*NAMES, "loop"])["s/a/one"],
                        NAMES) == set()


def test_statx_reads_what_os_stat_reads(exports):
    """The buffer's fields are the inode, size, ctime and mtime os.stat gives; a failed
    call leaves no earlier file's state behind."""
    assert STATX is not None, "this machine's libc has statx: the fast reader must be used"
    reader = directory_states(NAMES)
    folder = exports / "s/a/one"
    directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        states, failures = reader.read(directory)
    finally:
        os.close(directory)
    assert failures == [(2, 2)]         # tiktok.mp4: ENOENT
    records = len(NAMES) + 1
    words = [int.from_bytes(states[at:at + 8], sys.byteorder) for at in range(0, len(states), 8)]
    fields = [words[field * records:(field + 1) * records] for field in range(6)]
    for index, path in enumerate([folder, *(folder / name for name in NAMES)]):
        if not path.exists():
            assert [field[index] for field in fields] == [0] * 6
            continue
        state = path.stat()
        ctime, mtime = divmod(state.st_ctime_ns, 10**9), divmod(state.st_mtime_ns, 10**9)
        assert [field[index] for field in fields] == [
            state.st_ino, state.st_size, ctime[0], ctime[1], mtime[0], mtime[1]]
