"""The two seams (docs/architecture.md): where the bytes live is a store, where the work
runs is a place, each chosen once at load. The buckets' side of the stores is tried against
moto in test_storage.py and on a cluster in test_cluster.py; here, the directory's side and
the rule that nothing outside exporter/storage asks whether a root is a bucket."""

import hashlib
import re
from pathlib import Path

import pytest

from exporter.model.settings import ClusterAddress, resolve_settings
from exporter.model.sources import Title
from exporter.pipeline.placement.places import HERE, OnDask, place_of
from exporter.storage.exports import ExportsBucket, ExportsDirectory, exports_store
from exporter.storage.renders import RendersBucket, RendersDirectory, renders_store

pytestmark = pytest.mark.once

EXPORTER = Path(__file__).resolve().parent.parent / "exporter"
# Where a bucket URL may be read: parsed (settings, locations); turned into a store by
# exporter/storage alone.
MAY_READ_URLS = {"model/settings.py", "model/locations.py"}
ASKS_BUCKET = re.compile(r"\b(renders_url|exports_url|is_bucket_url|parse_location)\b|s3://\w")


def test_only_the_stores_ask_whether_a_root_is_a_bucket():
    offenders = []
    for path in sorted(EXPORTER.rglob("*.py")):
        name = path.relative_to(EXPORTER).as_posix()
        if name.startswith("storage/") or name in MAY_READ_URLS:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if ASKS_BUCKET.search(code) and not code.lstrip().startswith(('"', "'")):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert offenders == []


def settings_of(**variables):
    return resolve_settings(lambda name, default=None: variables.get(name, default), {})


def test_stores_and_place_are_chosen_from_the_settings_once(tmp_path):
    local = settings_of(renders=str(tmp_path / "r"), exports=str(tmp_path / "e"))
    assert renders_store(local) == RendersDirectory(tmp_path / "r")
    assert exports_store(local) == ExportsDirectory(tmp_path / "e")
    buckets = settings_of(renders="s3://media/renders", exports="s3://media/exports")
    assert renders_store(buckets) == RendersBucket("s3://media/renders", buckets.renders)
    assert exports_store(buckets) == ExportsBucket("s3://media/exports", buckets.exports)
    assert place_of(None) is HERE
    cluster = ClusterAddress("tls://10.0.0.5:8786")
    assert place_of(cluster) == OnDask(cluster)
    assert OnDask(cluster).away and not HERE.away


def title_in(root: Path) -> Title:
    directory = root / "women" / "18-23" / "alpha"
    directory.mkdir(parents=True)
    (directory / "final.mp4").write_bytes(b"render bytes")
    (directory / "metadata.json").write_text("{}", encoding="utf-8")
    return Title(directory=directory, segment="women", age="18-23", title_id="alpha")


def test_a_directory_of_renders_reads_in_place_and_sees_a_file_change(tmp_path):
    store = RendersDirectory(tmp_path)
    title = title_in(tmp_path)
    assert store.refresh() == []
    assert store.source_sha256(title, None) == hashlib.sha256(b"render bytes").hexdigest()
    assert store.open(title, tmp_path, needed=lambda: pytest.fail("not asked")) is title
    states = store.states(title)
    assert store.changed(title, states) is None
    (title.directory / "metadata.json").write_text('{"title": "new"}', encoding="utf-8")
    assert "changed while the export was made" in store.changed(title, states)


def test_a_directory_of_exports_is_its_own_store(tmp_path):
    store = ExportsDirectory(tmp_path / "exports")
    assert store.load() is None
    assert store.intact(object(), None)        # without looking at the export
    assert store.listed("women/18-23/alpha", ["youtube.mp4"]) == {}
    assert store.publish("women/18-23/alpha", tmp_path, ["youtube.mp4"]) is None
    assert store.staged_at(tmp_path / "elsewhere") is store
    assert store.access_problem() is None and (tmp_path / "exports").is_dir()
    assert ExportsDirectory(Path("/proc/no-such")).access_problem().startswith(
        "cannot write the exports root /proc/no-such")
