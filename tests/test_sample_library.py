"""The bundled sample library through real doit + ffmpeg with the shipped specs.

One export (16 encodes at 1080x1920) made once per session, shared by the xdist workers:
read-only checks side by side, then no-op reruns each holding the tree alone.
"""

import os
import shutil

import jsonschema
import pytest
from conftest import (
    BOOKKEEPING,
    REPO,
    SHIPPED_PLATFORMS,
    TEST_FFMPEG,
    assert_conforms,
    executed_tasks,
    exported_videos,
    image_facts,
    leftovers,
    load_yaml,
    made_once,
    media_facts,
    read_json,
    run_doit,
    sharing,
)

from exporter.media.ffmpeg_binary import check_ffmpeg
from exporter.model.spec import load_schema

EXAMPLES = REPO / "examples" / "renders"
PLATFORMS = ("facebook", "instagram", "tiktok", "youtube")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    def make(root):
        renders, exports = root / "renders", root / "exports"
        shutil.copytree(EXAMPLES, renders)
        return run_doit("-n", "2", f"renders={renders}", f"exports={exports}", check=0)
    root, first = made_once(tmp_path_factory, "sample", make)
    return root, (root / "renders", root / "exports", first)


@pytest.fixture
def sample(exported):
    """The exported library, read by tests side by side."""
    root, made = exported
    with sharing(root):
        yield made


@pytest.fixture
def sample_alone(exported):
    """The exported library, held by one test that runs doit on it (a second run on the
    same tree would be refused by its lock) or changes a file of it."""
    root, made = exported
    with sharing(root, exclusive=True):
        yield made


def snapshot(exports):
    """(size, mtime) of every file of the exports tree except doit's own DB."""
    return {str(p.relative_to(exports)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in exports.rglob("*") if p.is_file() and p.name not in BOOKKEEPING}


def test_every_export_conforms_to_its_platform(sample):
    renders, exports, first = sample
    titles = sorted(p.parent for p in renders.rglob("final.mp4"))
    assert len(titles) >= 3
    for title_dir in titles:
        source_duration = media_facts(title_dir / "final.mp4")["duration_s"]
        out_dir = exports / title_dir.relative_to(renders)
        for platform in PLATFORMS:
            spec = load_yaml(SHIPPED_PLATFORMS / f"{platform}.yaml")
            assert_conforms(out_dir / f"{platform}.mp4", spec, source_duration)
    assert "registry: 16 exported, 0 stale, 0 failed, 0 pending" in first.stdout
    assert len(executed_tasks(first.stdout)) == 16


def test_sidecars_metadata_and_registry_are_valid(sample):
    renders, exports, _ = sample
    sidecars = sorted(exports.rglob("*.export.json"))
    assert len(sidecars) == 16
    for path in sidecars:
        sidecar = read_json(path)
        jsonschema.validate(sidecar, load_schema("sidecar"))
        video = path.parent / sidecar["output"]["path"]
        assert sidecar["output"]["size_bytes"] == video.stat().st_size
        assert sidecar["encode"]["mode"] in ("encode", "shared")
        jsonschema.validate(read_json(path.parent / sidecar["metadata_file"]),
                            load_schema("platform-metadata"))
        cover_spec = load_yaml(SHIPPED_PLATFORMS / f"{sidecar['platform']}.yaml")["cover"]
        cover = image_facts(path.parent / sidecar["cover"]["path"])
        assert cover["format"] == "JPEG"
        assert (cover["width"], cover["height"]) == (cover_spec["width"], cover_spec["height"])
        assert cover["size_bytes"] <= cover_spec["max_bytes"]
        poster = image_facts(path.parent / sidecar["poster"]["path"])
        assert (poster["format"], poster["width"], poster["height"]) == ("JPEG", 270, 480)
    modes = sorted(read_json(path)["encode"]["mode"] for path in sidecars)
    # per title one ffmpeg process makes both encodes (8 and 6 Mb/s); the others share them
    assert modes == ["encode"] * 4 + ["shared"] * 12
    registry = read_json(exports / "registry.json")
    jsonschema.validate(registry, load_schema("registry"))
    assert {row["status"] for row in registry["exports"]} == {"exported"}
    assert registry["totals"]["all"]["size_bytes"] == sum(
        p.stat().st_size for p in exported_videos(exports))


def test_no_temporary_or_error_files_are_left(sample):
    _, exports, _ = sample
    assert leftovers(exports) == []
    assert list(exports.rglob("*.error.json")) == []


def test_each_sidecar_names_the_ffmpeg_under_test(sample):
    """The bundled ffmpeg unless the run names another, whatever PATH holds (CI's Debian
    pass names /usr/bin/ffmpeg; test_ffmpeg_binary puts a bad one first on PATH)."""
    _, exports, _ = sample
    for path in exports.rglob("*.export.json"):
        encode = read_json(path)["encode"]
        assert encode["ffmpeg"] == TEST_FFMPEG
        assert encode["ffmpeg_version"] == check_ffmpeg(TEST_FFMPEG).version


def test_rotated_source_is_probed_with_its_rotation(sample):
    _, exports, _ = sample
    sidecar = read_json(exports / "men/24-30/phone-rotated/youtube.export.json")
    assert abs(sidecar["source"]["probe"]["rotation"]) == 90
    assert sidecar["output"]["probe"]["rotation"] == 0


def test_noop_rerun_runs_nothing_and_writes_nothing(sample_alone):
    renders, exports, _ = sample_alone
    before = snapshot(exports)
    rerun = run_doit("-n", "2", f"renders={renders}", f"exports={exports}", check=0)
    assert executed_tasks(rerun.stdout) == []
    assert snapshot(exports) == before


def test_touch_only_rerun_runs_nothing_and_writes_nothing(sample_alone):
    renders, exports, _ = sample_alone
    before = snapshot(exports)
    for path in renders.rglob("*"):
        if path.is_file():
            os.utime(path)      # new mtime, same bytes
    rerun = run_doit(f"renders={renders}", f"exports={exports}", check=0)
    assert executed_tasks(rerun.stdout) == []
    assert snapshot(exports) == before


def test_list_status_shows_every_export_up_to_date(sample_alone):
    renders, exports, _ = sample_alone
    listing = run_doit("list", "--all", "--status", f"renders={renders}", f"exports={exports}",
                       check=0)
    export_lines = [line for line in listing.stdout.splitlines()
                    if line[2:].split(":")[0].strip() in PLATFORMS and ":" in line]
    assert len(export_lines) == 16
    assert all(line.startswith("U ") for line in export_lines), listing.stdout


def test_registry_regenerates_to_identical_content(sample_alone):
    renders, exports, _ = sample_alone
    registry = exports / "registry.json"
    original = registry.read_bytes()
    registry.unlink()
    run_doit(f"renders={renders}", f"exports={exports}", check=0)
    assert registry.read_bytes() == original
