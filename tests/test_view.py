"""registry.json and index.html spliced from the unchanged titles' bytes (report/view.py,
report/splice.py) are the files a regeneration from nothing but doit's DB and the
sidecars writes, byte for byte, whatever changed; a file or index that cannot be trusted
is regenerated whole."""

import json
import shutil
from datetime import datetime, timezone

import pytest
from conftest import TEST_FFMPEG, TEST_PRESET, read_json, run_doit, small_platforms

from exporter.model.files import read_json as read_json_or_none
from exporter.model.records import read_record
from exporter.model.settings import resolve_settings
from exporter.pipeline.export.library import Build
from exporter.pipeline.export.stamp import STAMP_NAME, check_stamp
from exporter.report.formatting import MADE
from exporter.report.gallery import gallery_html, page_source_of, tile_parts
from exporter.report.ledger import registry_document
from exporter.report.registry import registry_state, registry_text
from exporter.report.splice import Carried, Entry, carried_titles, merged
from exporter.report.view import regenerate_registry, write_gallery
from exporter.report.view_index import trusted_index

# The tool's bookkeeping, not ffmpeg: run once, in the first pass (README: Test).
pytestmark = pytest.mark.once

INDEX = ".view-index.json"


def make_stamped(library):
    """Three titles x two platforms, exported by a complete run (which stamps the library
    and indexes its registry and gallery)."""
    platforms = small_platforms(library.root.parent / "platforms")
    library.add("women", "18-23", "alpha")
    library.add("men", "24-30", "beta", shape="landscape")
    library.add("men", "13-17", "gamma")
    all_args = library.args(f"platforms_dir={platforms}")
    run_doit(*all_args, check=0)
    assert (library.exports / INDEX).exists() and (library.exports / STAMP_NAME).exists()
    return {"platforms": platforms, "all_args": all_args}


@pytest.fixture
def stamped(restored_library):
    return restored_library("view-stamped", make_stamped)


def build_of(library):
    values = dict(arg.split("=", 1) for arg in library.all_args)
    settings = resolve_settings(lambda name, default=None: values.get(name, default),
                                environ={"REELEXPORT_X264_PRESET": TEST_PRESET,
                                         "REELEXPORT_FFMPEG": TEST_FFMPEG})
    return Build(settings)


def regenerated(library):
    """(registry.json, index.html) as made from nothing but doit's DB and the files: every
    export checked against the DB, every row and tile read from its sidecar."""
    build = build_of(library)
    document = registry_document(build, {}, None)
    jobs = {(job.title.title_id, job.spec.name): job for job in build.all_jobs}
    sidecars, metadata = {}, {}
    for row in document["exports"]:
        key = (row["title_id"], row["platform"])
        if row["status"] in MADE and key in jobs:
            parts = tile_parts(read_record(jobs[key].path("sidecar")),
                               read_json_or_none(jobs[key].path("metadata")))
            if parts[0]:
                sidecars[key] = parts[0]
            metadata[key] = parts[1]
    registry = build.settings.registry_file
    return (registry_text(document),
            gallery_html(document, sidecars, metadata,
                         page_source_of(registry_state(registry))))


def assert_as_regenerated(library):
    registry, page = regenerated(library)
    assert (library.exports / "registry.json").read_text() == registry
    assert (library.exports / "index.html").read_text() == page
    index = trusted_index(build_of(library).settings, ["tiktok", "youtube"])
    assert index is not None and index.page_indexed(build_of(library).settings), \
        "the run indexed the files it wrote"


def rows_of(library):
    return {(r["title_id"], r["platform"]): r
            for r in read_json(library.exports / "registry.json")["exports"]}


def test_a_title_remade_is_spliced_into_what_a_full_regeneration_writes(stamped, clip_cache):
    before = rows_of(stamped)
    shutil.copy(clip_cache("two-seconds", width=360, height=640, seconds=2, fps=30,
                           audio=True), stamped.root / "women/18-23/alpha/final.mp4")
    run_doit(*stamped.all_args, check=0)
    after = rows_of(stamped)
    assert after["alpha", "youtube"]["sha256"] != before["alpha", "youtube"]["sha256"]
    assert after["beta", "tiktok"] == before["beta", "tiktok"]
    assert_as_regenerated(stamped)


def test_a_full_check_splices_without_reading_the_registry_whole(stamped, monkeypatch):
    """With no stamp (a spec edit, `doit forget`), doit checks every export; the titles it
    finds up to date keep their bytes, read by their index spans alone: the registry of
    a large library is never parsed whole. A full check with one title made again writes
    what a regeneration writes."""
    (stamped.exports / STAMP_NAME).unlink()
    build = build_of(stamped)
    outcomes = {job.task_name: "up-to-date" for job in build.all_jobs}

    def whole(self):
        raise AssertionError("the registry was read whole")
    monkeypatch.setattr("exporter.report.view.InPlace.whole", whole)
    view = regenerate_registry(build, outcomes, None)
    assert [(item.first, item.end) for item in view.items] == [(0, 3)]
    monkeypatch.undo()
    shutil.copy(stamped.root / "men/24-30/beta/final.mp4",
                stamped.root / "women/18-23/alpha/final.mp4")
    run_doit(*stamped.all_args, check=0)
    assert_as_regenerated(stamped)


def test_a_title_added_and_one_removed(stamped):
    stamped.add("kids", "13-17", "delta")
    run_doit(*stamped.all_args, check=0)
    assert rows_of(stamped)["delta", "youtube"]["status"] == "exported"
    assert_as_regenerated(stamped)
    shutil.rmtree(stamped.root / "men/24-30/beta")
    run_doit(*stamped.all_args, check=0)
    assert rows_of(stamped)["beta", "tiktok"]["status"] == "removed"
    assert_as_regenerated(stamped)


def test_a_failed_export(stamped):
    (stamped.root / "men/13-17/gamma/final.mp4").write_bytes(b"")
    run_doit(*stamped.all_args)         # gamma fails: exit 1
    assert rows_of(stamped)["gamma", "youtube"]["status"] == "failed"
    assert_as_regenerated(stamped)


def test_a_registry_edited_by_hand_is_regenerated_whole(stamped):
    registry = stamped.exports / "registry.json"
    text = registry.read_text()
    edited = text.replace('"size_bytes":', '"size_bytes":1', 1)
    assert edited != text
    registry.write_text(edited)
    build = build_of(stamped)
    assert trusted_index(build.settings, build.all_specs) is None
    (stamped.root / "men/13-17/gamma/final.mp4").touch()      # and one title to check
    run_doit(*stamped.all_args, check=0)
    assert registry.read_text() == text, "the edit is not carried over"
    assert_as_regenerated(stamped)


def test_without_its_index_the_view_is_regenerated_whole(stamped, clip_cache):
    (stamped.exports / INDEX).unlink()
    shutil.copy(clip_cache("two-seconds", width=360, height=640, seconds=2, fps=30,
                           audio=True), stamped.root / "men/13-17/gamma/final.mp4")
    run_doit(*stamped.all_args, check=0)
    assert_as_regenerated(stamped)


def test_only_the_titles_that_changed_are_made_again(stamped):
    """In process, a run whose doit decided nothing (the stamp proves two titles): those
    two are carried as bytes, the third made again, and the files are the same."""
    (stamped.root / "men/24-30/beta/final.mp4").touch()
    build = build_of(stamped)
    check = check_stamp(build)
    assert check.changed == {"men/24-30/beta"}
    view = regenerate_registry(build, {}, check)
    assert view.items[0] == Carried(0, 1) and view.items[2] == Carried(2, 3)
    assert view.items[1].key == "men/24-30/beta"
    assert not view.changed
    write_gallery(build, view, made=set())
    assert_as_regenerated(stamped)


def test_a_publish_at_passed_makes_its_title_again(stamped):
    """A row's `queue` changes when its publish_at passes, nothing else changed: the index
    names the moment, and the title is not carried past it."""
    index_file = stamped.exports / INDEX
    index = json.loads(index_file.read_text())
    index["due"] = {"0": "2030-01-01T00:00:00+00:00"}
    index_file.write_text(json.dumps(index))
    build = build_of(stamped)
    check, index = check_stamp(build), trusted_index(build.settings, build.all_specs)
    first = index.titles[0]
    assert first in carried_titles(build, index, check.held, {},
                                   datetime(2029, 12, 31, tzinfo=timezone.utc))
    assert first not in carried_titles(build, index, check.held, {},
                                       datetime(2030, 1, 1, tzinfo=timezone.utc))


def test_carried_places_and_made_titles_merge_in_registry_order():
    class Index:
        titles = ["a/1/x", "a/1/y", "a/2/z", "b/1/w"]
    made = [Entry(("a", "1", "xa"), "a/1/xa", [], None),       # new, between x and y
            Entry(("a", "2", "z"), "a/2/z", [], None),          # its rows made again
            Entry(("c", "1", "v"), "c/1/v", [], None)]          # new, last
    assert merged([0, 1, 3], made, Index()) == [
        Carried(0, 1), made[0], Carried(1, 2), made[1], Carried(3, 4), made[2]]
    assert merged([0, 1, 2, 3], [], Index()) == [Carried(0, 4)]


def test_a_gallery_deleted_is_made_again_whole(stamped):
    """Nothing else changed: the registry is the one in place, carried whole, and every
    card is made again from the sidecars."""
    (stamped.exports / "index.html").unlink()
    registry = (stamped.exports / "registry.json").stat()
    run_doit(*stamped.all_args, check=0)
    assert (stamped.exports / "registry.json").stat().st_ino == registry.st_ino
    assert_as_regenerated(stamped)
