""""Up to date" means the content (issue: no stale or corrupt export is ever certified).

A render redelivered with its old mtime (`cp -p`, `rsync -a`, `tar x`), an export written in
place, a shared encode changed under the tool: each is found by the next `doit` and made
again from the source, and `doit status --check` says so until it is. Real doit, real
ffmpeg, bytes compared with sha256 by the test itself.
"""

import hashlib
import json
import os
import shutil
import subprocess

import pytest
from conftest import executed_tasks, read_json, run_doit, small_platforms

# the up-to-date check, not ffmpeg: the first pass only
pytestmark = pytest.mark.once

SHARING = ("youtube", "instagram", "facebook")    # one encode below 60 s: a shared key


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_keeping_mtime(source, target):
    """`cp -p source target` over an existing target: written in place, mtime put back."""
    before = target.stat()
    subprocess.run(["cp", "-p", str(source), str(target)], check=True)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_mtime_ns == before.st_mtime_ns


def write_in_place(path, offset, data):
    """`dd conv=notrunc`: bytes overwritten inside the file, its inode kept."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def assert_every_export_is_its_record(library):
    """Every export's files are the bytes its sidecar records, made from today's source."""
    sidecars = sorted(library.exports.rglob("*.export.json"))
    assert sidecars
    for path in sidecars:
        sidecar = read_json(path)
        title = library.root / sidecar["segment"] / sidecar["age"] / sidecar["title_id"]
        assert sidecar["inputs"]["source_sha256"] == sha256(title / "final.mp4"), path
        assert sha256(path.parent / sidecar["output"]["path"]) == sidecar["output"]["sha256"]
        for kind in ("cover", "poster"):
            assert sha256(path.parent / sidecar[kind]["path"]) == sidecar[kind]["sha256"]
        assert (sha256(path.parent / sidecar["metadata_file"])
                == sidecar["metadata_file_sha256"])


@pytest.fixture
def exported(library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms", names=(*SHARING, "tiktok"))
    library.add("women", "18-23", "alpha")
    library.add("men", "24-30", "beta", shape="landscape")
    library.all_args = library.args(f"platforms_dir={platforms}")
    run_doit(*library.all_args, check=0)
    run_doit("status", "--check", *library.all_args, check=0)
    return library


@pytest.mark.parametrize("other_shape", ["vertical-twin", "landscape"])
def test_a_render_redelivered_with_its_old_mtime_is_exported_again(exported, tmp_path,
                                                                    clip_cache, other_shape):
    """New bytes over final.mp4 by `cp -p`: the same size (a twin clip differing in its
    bytes only) and another size."""
    source = exported.root / "women/18-23/alpha/final.mp4"
    if other_shape == "vertical-twin":
        new = tmp_path / "twin.mp4"
        data = bytearray(source.read_bytes())
        at = data.index(b"mvhd") + 8            # the movie's creation time: valid either way
        data[at:at + 4] = (int.from_bytes(data[at:at + 4], "big") + 1).to_bytes(4, "big")
        new.write_bytes(bytes(data))
        assert new.stat().st_size == source.stat().st_size
    else:
        new = exported.root / "men/24-30/beta/final.mp4"
    copy_keeping_mtime(new, source)

    stale = run_doit("status", "--check", *exported.all_args, check=1)
    assert "4 stale" in stale.stderr, stale.stderr
    listing = run_doit("list", "--status", *exported.all_args, check=0).stdout
    assert "R youtube:alpha" in listing and "U youtube:beta" in listing
    rerun = run_doit(*exported.all_args, check=0)
    assert executed_tasks(rerun.stdout) == ["facebook:alpha", "instagram:alpha",
                                            "tiktok:alpha", "youtube:alpha"]
    assert_every_export_is_its_record(exported)
    run_doit("status", "--check", *exported.all_args, check=0)


def test_metadata_and_thumbnail_redelivered_with_old_mtimes_are_used(exported, tmp_path):
    title = exported.root / "women/18-23/alpha"
    new_metadata = tmp_path / "metadata.json"
    old = json.loads((title / "metadata.json").read_text())
    new_metadata.write_text(json.dumps({**old, "title": "Title alphA"}))   # same size
    copy_keeping_mtime(new_metadata, title / "metadata.json")
    rerun = run_doit(*exported.all_args, check=0)
    assert "youtube:alpha" in executed_tasks(rerun.stdout)
    assert read_json(exported.exports / "women/18-23/alpha/metadata_youtube.json")[
        "title"].startswith("Title alphA")

    # a thumbnail, then another one delivered over it with the old mtime
    cover = exported.exports / "women/18-23/alpha/youtube.cover.jpg"
    shutil.copy(exported.exports / "men/24-30/beta/youtube.poster.jpg", title / "thumbnail.jpg")
    run_doit(*exported.all_args, check=0)
    first_cover = sha256(cover)
    copy_keeping_mtime(exported.exports / "women/18-23/alpha/youtube.poster.jpg",
                       title / "thumbnail.jpg")
    run_doit("status", "--check", *exported.all_args, check=1)
    run_doit(*exported.all_args, check=0)
    assert sha256(cover) != first_cover
    assert read_json(exported.exports / "women/18-23/alpha/youtube.export.json")[
        "inputs"]["thumbnail_sha256"] == sha256(title / "thumbnail.jpg")
    assert_every_export_is_its_record(exported)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_an_export_written_in_place_changes_no_other_and_is_made_again(exported, processes):
    folder = exported.exports / "women/18-23/alpha"
    before = {name: sha256(folder / f"{name}.mp4") for name in SHARING}
    assert len(set(before.values())) == 1, "the three share one encode"
    size = (folder / "youtube.mp4").stat().st_size
    write_in_place(folder / "youtube.mp4", size // 2, b"\xff" * 64)
    corrupt = sha256(folder / "youtube.mp4")
    assert corrupt != before["youtube"]
    for name in ("instagram", "facebook"):          # their own bytes: untouched
        assert sha256(folder / f"{name}.mp4") == before[name]

    stale = run_doit("status", "--check", *exported.all_args, check=1)
    assert "1 stale" in stale.stderr, stale.stderr
    rerun = run_doit("-n", processes, *exported.all_args, check=0)
    assert executed_tasks(rerun.stdout) == ["youtube:alpha"]
    # encoded again from the source (an encode alone may differ in its bytes from one made
    # alongside other platforms'): not the corrupt bytes, the ones its sidecar records
    assert sha256(folder / "youtube.mp4") != corrupt
    for name in ("instagram", "facebook"):
        assert sha256(folder / f"{name}.mp4") == before[name]
    assert_every_export_is_its_record(exported)
    history = run_doit("history", "youtube:alpha", *exported.all_args, check=0).stdout
    assert "made" in history.splitlines()[0] and "forced" in history.splitlines()[0]


@pytest.mark.parametrize("kind", ["metadata_youtube.json", "youtube.cover.jpg",
                                  "youtube.export.json"])
def test_any_file_an_export_owns_written_in_place_makes_it_stale(exported, kind):
    path = exported.exports / "women/18-23/alpha" / kind
    write_in_place(path, 2, b"Z")
    run_doit("status", "--check", *exported.all_args, check=1)
    rerun = run_doit(*exported.all_args, check=0)
    assert executed_tasks(rerun.stdout) == ["youtube:alpha"]
    assert_every_export_is_its_record(exported)


def test_a_shared_encode_changed_in_the_cache_is_never_shared(library, tmp_path):
    """A cache entry kept for an export not yet made (a run stopped after the first
    platform) and written in place meanwhile: the export encodes anew, never copies it."""
    platforms = small_platforms(tmp_path / "platforms", names=SHARING)
    library.add("women", "18-23", "alpha")
    args = library.args(f"platforms_dir={platforms}")
    run_doit("youtube:alpha", *args, check=0)
    entries = list((library.exports / ".shared").glob("*.mp4"))
    assert len(entries) == 1, "kept for instagram and facebook, not yet made"
    write_in_place(entries[0], entries[0].stat().st_size // 2, b"\xff" * 64)
    corrupt = sha256(entries[0])
    run_doit(*args, check=0)
    folder = library.exports / "women/18-23/alpha"
    assert corrupt not in {sha256(folder / f"{name}.mp4") for name in SHARING}
    assert_every_export_is_its_record(library)
    assert not list((library.exports / ".shared").glob("*.mp4")), "pruned once all made"


def test_fixing_or_removing_a_bad_thumbnail_clears_the_failure(library, tmp_path):
    platforms = small_platforms(tmp_path / "platforms", names=("youtube",))
    title = library.add("women", "18-23", "alpha")
    (title / "thumbnail.jpg").write_bytes(b"not a jpeg at all")
    args = library.args(f"platforms_dir={platforms}")
    failed = run_doit(*args, check=2)
    assert "thumbnail.jpg cannot be read as an image" in failed.stderr
    (title / "thumbnail.jpg").unlink()
    run_doit(*args, check=0)
    run_doit("status", "--check", *args, check=0)
