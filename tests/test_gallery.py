"""The gallery: pure HTML from the registry, written by every run, checked in a real browser.

The browser tests drive Debian's chromium headless (`--dump-dom`, `--screenshot`) on the
page loaded from disk; they skip when /usr/bin/chromium is absent (.ci/run installs it).
"""

import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import REPO, read_json, run_doit, small_platforms

from exporter.report.gallery import gallery_html
from exporter.report.registry import build_registry, registry_row

# The tool's bookkeeping, not ffmpeg: run once, in the first pass (README: Test).
pytestmark = pytest.mark.once

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
CAPTION = 'Alpha <script>alert("x")</script> & "quotes"\n\n#test'


class Elements(HTMLParser):
    """Every element in document order: tag, attributes, own text and open ancestors."""

    VOID = {"img", "meta", "input", "br", "link", "hr"}

    def __init__(self, text):
        super().__init__()
        self.elements, self.open = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, **{k: v or "" for k, v in attrs}, "text": "",
                   "parents": list(self.open)}
        self.elements.append(element)
        if tag not in self.VOID:
            self.open.append(element)

    def handle_endtag(self, tag):
        while self.open and self.open.pop()["tag"] != tag:
            pass

    def handle_data(self, data):
        if self.open:
            self.open[-1]["text"] += data

    def having(self, tag, css_class=None):
        return [e for e in self.elements if e["tag"] == tag
                and (css_class is None or css_class in e.get("class", "").split())]

    def options(self, name):
        return [o["value"] for o in self.having("option") if o["parents"][-1]["name"] == name]


# --- pure rendering ---------------------------------------------------------------------

def sample():
    """alpha: exported youtube + failed tiktok; beta: pending youtube + stale tiktok."""
    def row(title, platform, status, segment):
        identity = {"title_id": title, "segment": segment, "age": "18-23", "platform": platform}
        sidecar = {"output": {"size_bytes": 400_000, "duration_s": 1.0, "sha256": "cd" * 32,
                              "video_bitrate": 3_100_000, "width": 270, "height": 480},
                   "encode": {"mode": "encode"}, "finished_at": "2026-11-25T08:00:00+00:00"}
        error = {"cause": "final.mp4 is empty (0 bytes)", "failed_at": "2026-11-25T08:01:00"}
        return registry_row(identity, status, f"{segment}/18-23/{title}/{platform}.mp4",
                            sidecar, error), sidecar
    made = [row("alpha", "youtube", "exported", "women"), row("alpha", "tiktok", "failed", "women"),
            row("beta", "youtube", "pending", "men"), row("beta", "tiktok", "stale", "men")]
    document = build_registry([r for r, _ in made], ["youtube", "tiktok"])
    poster = {"path": "x.poster.jpg", "width": 270, "height": 480, "sha256": "ef" * 32}
    sidecars = {(r["title_id"], r["platform"]): {**s, "poster": {**poster,
                                                                   "path": f"{r['platform']}.poster.jpg"}}
                for r, s in made if r["status"] in ("exported", "stale")}
    metadata = {("alpha", "youtube"): {"title": "Alpha", "caption": CAPTION},
                ("beta", "tiktok"): {"title": "Beta, a separate title", "caption": "#beta"}}
    return document, sidecars, metadata


def test_page_has_one_card_per_title_and_a_tile_per_platform():
    page = Elements(gallery_html(*sample()))
    cards = page.having("article", "card")
    assert [(c["data-title"], c["data-segment"], c["data-age"], c["data-status"])
            for c in cards] == [("beta", "men", "18-23", "pending stale"),
                                ("alpha", "women", "18-23", "exported failed")]
    tiles = page.having("figure", "export")
    assert [(t["data-platform"], t["data-status"]) for t in tiles] == [
        ("tiktok", "stale"), ("youtube", "pending"), ("tiktok", "failed"), ("youtube", "exported")]
    posters = [img["src"] for img in page.having("img", "poster")]
    assert posters == [f"men/18-23/beta/tiktok.poster.jpg?v={'ef' * 6}",
                       f"women/18-23/alpha/youtube.poster.jpg?v={'ef' * 6}"]
    assert [a["href"] for a in page.having("a") if a["href"].endswith(".mp4")] == [
        "men/18-23/beta/tiktok.mp4", "women/18-23/alpha/youtube.mp4"]
    assert [p["text"] for p in page.having("p", "cause")] == ["final.mp4 is empty (0 bytes)"]
    assert [p["text"] for p in page.having("p", "caption")] == ["#beta", CAPTION]
    assert [p["text"] for p in page.having("p", "title")] == ["Beta, a separate title"]
    facts = [e["text"] for e in page.having("dd")]
    assert facts[:4] == ["1.0 s", "400.0 kB", "3.10 Mb/s", "270x480"]
    assert page.options("status") == ["", "exported", "stale", "failed", "pending", "removed"]
    assert page.options("platform") == ["", "tiktok", "youtube"]
    assert page.options("segment") == ["", "men", "women"]


def test_user_text_is_escaped_and_nothing_is_fetched_from_outside():
    html = gallery_html(*sample())
    assert "<script>alert" not in html
    assert "Alpha &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;" in html
    assert html.count("<script>") == 1, "only the page's own inline script"
    urls = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert urls and all(not re.match(r"^([a-z][a-z0-9+.-]*:|//)", url) for url in urls), urls
    assert not re.search(r"@import|url\(", html)


def test_page_is_deterministic():
    assert gallery_html(*sample()) == gallery_html(*sample())


# --- written by every run -----------------------------------------------------------------

@pytest.fixture(scope="module")
def gallery(tmp_path_factory, clip_cache):
    """A real build with every status: exported, failed, stale and pending."""
    root = tmp_path_factory.mktemp("gallery")
    renders, exports = root / "renders", root / "exports"
    platforms = small_platforms(root / "platforms")
    clip = clip_cache("vertical", width=360, height=640, seconds=1, fps=30, audio=True)

    def add(segment, age, title, caption):
        directory = renders / segment / age / title
        directory.mkdir(parents=True)
        shutil.copy(clip, directory / "final.mp4")
        (directory / "metadata.json").write_text(json.dumps(
            {"title": caption, "hashtags": ["test"]}), encoding="utf-8")
        return directory

    def doit(*extra):
        return run_doit(f"renders={renders}", f"exports={exports}",
                        f"platforms_dir={platforms}", *extra)

    add("women", "18-23", "alpha", 'Alpha <b>"bold"</b> & more')
    (add("women", "24-30", "broken", "Broken") / "final.mp4").write_bytes(b"")
    gamma = add("men", "18-23", "gamma", "Gamma")
    assert doit().returncode != 0
    (gamma / "metadata.json").write_text('{"title": "Gamma, renamed"}', encoding="utf-8")
    add("men", "24-30", "late", "Late")
    assert doit("segment=women").returncode != 0      # broken fails again; men are left
    return exports, doit


def test_every_run_writes_the_gallery_only_when_it_changes(gallery):
    exports, doit = gallery
    page = exports / "index.html"
    registry = read_json(exports / "registry.json")
    statuses = {(r["title_id"], r["platform"]): r["status"] for r in registry["exports"]}
    assert statuses == {("alpha", "tiktok"): "exported", ("alpha", "youtube"): "exported",
                        ("broken", "tiktok"): "failed", ("broken", "youtube"): "failed",
                        ("gamma", "tiktok"): "stale", ("gamma", "youtube"): "stale",
                        ("late", "tiktok"): "pending", ("late", "youtube"): "pending"}
    parsed = Elements(page.read_text(encoding="utf-8"))
    assert len(parsed.having("article", "card")) == 4
    posters = [img["src"].split("?")[0] for img in parsed.having("img", "poster")]
    assert len(posters) == 4 and all((exports / src).stat().st_size > 0 for src in posters)
    before = page.stat().st_mtime_ns
    doit("segment=women")
    assert page.stat().st_mtime_ns == before, "an unchanged gallery is not rewritten"


# --- in a real browser --------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed (/usr/bin/chromium); .ci/run installs it")


def chromium(tmp_path, url, *mode, window="1280,1400"):
    """Run headless chromium on `url`; returns its stdout (the DOM for --dump-dom)."""
    argv = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
            f"--window-size={window}", "--virtual-time-budget=5000", *mode, url]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def visible(dom, tag, css_class):
    return [e for e in Elements(dom).having(tag, css_class) if "hidden" not in e]


@needs_chromium
def test_browser_shows_every_card_and_loads_every_poster(gallery, tmp_path):
    exports, _ = gallery
    dom = chromium(tmp_path, (exports / "index.html").as_uri(), "--dump-dom")
    page = Elements(dom)
    assert [c["data-title"] for c in visible(dom, "article", "card")] == [
        "gamma", "late", "alpha", "broken"]
    assert [o["text"] for o in page.having("output")] == ["4 of 4 titles"]
    images = page.having("img", "poster")
    assert len(images) == 4
    assert not [img["src"] for img in images if "missing" in img["class"].split()]


@needs_chromium
@pytest.mark.parametrize("query, cards, tiles", [
    ("status=failed", ["broken"], [("broken", "tiktok"), ("broken", "youtube")]),
    ("platform=tiktok&segment=men", ["gamma", "late"], [("gamma", "tiktok"), ("late", "tiktok")]),
])
def test_browser_filters(gallery, tmp_path, query, cards, tiles):
    exports, _ = gallery
    dom = chromium(tmp_path, f"{(exports / 'index.html').as_uri()}?{query}", "--dump-dom")
    shown = visible(dom, "article", "card")
    assert [c["data-title"] for c in shown] == cards
    parsed = Elements(dom)
    shown_tiles = [(tile["parents"][-2]["data-title"], tile["data-platform"])
                   for tile in parsed.having("figure", "export")
                   if not any("hidden" in e for e in (tile, *tile["parents"]))]
    assert shown_tiles == tiles
    assert [o["text"] for o in parsed.having("output")] == [f"{len(cards)} of 4 titles"]
    if "failed" in query:
        assert [p["text"] for p in parsed.having("p", "cause")] == [
            "final.mp4 is empty (0 bytes)"] * 2


@needs_chromium
def test_browser_screenshot_is_saved_as_an_artifact(gallery, tmp_path):
    exports, _ = gallery
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "gallery.png"
    shot.unlink(missing_ok=True)
    chromium(tmp_path, (exports / "index.html").as_uri(), f"--screenshot={shot}",
             window="1280,1000")
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1280, 1000)
