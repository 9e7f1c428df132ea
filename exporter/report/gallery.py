"""index.html in the exports root: one card per title, a poster per platform, offline.

`gallery_html` is pure (registry document + sidecars + metadata docs -> HTML text) and
deterministic, so the page is rewritten only when an export changed. Everything is inline:
no server, no network; posters and videos are linked by paths relative to the page.
"""

import base64
import functools
import hashlib
import posixpath
import sys
from html import escape
from pathlib import Path
from urllib.parse import quote

from exporter.model import layout, records
from exporter.model.files import read_json
from exporter.model.records import read_record, tile_facts
from exporter.report import formatting
from exporter.report.formatting import MADE, credentials_text, format_duration, format_size
from exporter.report.registry import STATUSES

CACHE_NAME = layout.GALLERY_CACHE     # earlier versions' tile cache: removed when found
PAGE = layout.GALLERY_PAGE
SOURCE_META = "reelexport-registry"   # the registry.json state the page was made from
POSTER_SCALE = 2     # posters are drawn at half their pixel size: sharp on dense screens

STYLE = """
:root { font: 14px/1.4 system-ui, sans-serif; color: #1d1d1f; background: #f4f4f6; }
body { margin: 0; padding: 1rem 1.5rem; }
h1 { margin: 0 0 .25rem; font-size: 1.4rem; }
header p { margin: .25rem 0 .75rem; color: #555; }
form { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; margin-bottom: 1rem; }
select { margin-left: .25rem; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(34rem, 1fr)); gap: 1rem; }
.card { background: #fff; border-radius: 8px; padding: .75rem 1rem; box-shadow: 0 1px 3px #0002; }
.card h2 { margin: 0; font-size: 1.1rem; }
.card .where { margin: 0 0 .5rem; color: #666; }
.exports { display: flex; flex-wrap: wrap; gap: .75rem; }
.export { margin: 0; width: 136px; }
.poster, .placeholder { display: block; border-radius: 4px; background: #222; }
.placeholder { width: 135px; height: 240px; }
.placeholder { display: flex; align-items: center; justify-content: center; color: #bbb;
  text-align: center; padding: .5rem; box-sizing: border-box; }
img.missing { outline: 2px dashed #c00; }
.head { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: baseline;
  gap: 0 .25rem; margin-top: .3rem; }
.platform { font-weight: 600; }
.badge { border-radius: 999px; padding: 0 .45rem; font-size: .75rem; color: #fff; }
.badge.exported { background: #1a7f37; } .badge.stale { background: #9a6700; }
.badge.failed { background: #cf222e; } .badge.pending { background: #6e7781; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 0 .4rem; margin: .25rem 0;
  font-size: .8rem; }
dt { color: #666; } dd { margin: 0; text-align: right; }
.caption { white-space: pre-wrap; font-size: .78rem; margin: .25rem 0 0; max-height: 9rem;
  overflow: auto; overflow-wrap: anywhere; }
.title { font-weight: 600; font-size: .8rem; margin: .25rem 0 0; overflow-wrap: anywhere; }
.upload { font-size: .8rem; margin: .25rem 0 0; color: #1a7f37; }
.upload.none { color: #777; }
.upload.outdated { color: #9a6700; font-weight: 600; }
.cause { color: #cf222e; font-size: .8rem; overflow-wrap: anywhere; margin: .25rem 0 0; }
[hidden] { display: none !important; }
"""

# Filters: <select> values, preset from the URL (?status=failed&platform=youtube).
SCRIPT = """
const form = document.getElementById('filters');
const params = new URLSearchParams(location.search);
for (const select of form.querySelectorAll('select')) {
  if (params.has(select.name)) select.value = params.get(select.name);
}
function applyFilters() {
  const want = Object.fromEntries(new FormData(form));
  const cards = document.querySelectorAll('.card');
  let shown = 0;
  for (const card of cards) {
    let any = false;
    for (const tile of card.querySelectorAll('.export')) {
      tile.hidden = (want.platform && tile.dataset.platform !== want.platform)
        || (want.status && tile.dataset.status !== want.status);
      any = any || !tile.hidden;
    }
    card.hidden = !any || (want.segment && card.dataset.segment !== want.segment)
      || (want.age && card.dataset.age !== want.age);
    if (!card.hidden) shown++;
  }
  document.getElementById('shown').textContent = shown + ' of ' + cards.length + ' titles';
}
form.addEventListener('change', applyFilters);
applyFilters();
"""


def attr(value):
    return escape(str(value), quote=True)


def href(path):
    """A relative URL for a path under the exports root (index.html sits at its top)."""
    return attr(quote(path))


def bitrate_text(output):
    bits = output.get("video_bitrate")
    if not bits and output.get("duration_s"):
        bits = output.get("size_bytes", 0) * 8 / output["duration_s"]
    return f"{bits / 1e6:.2f} Mb/s" if bits else "?"


def facts_html(row, sidecar):
    output = sidecar.get("output", {})
    facts = (("duration", format_duration(row.get("duration_s"))),
             ("size", format_size(row.get("size_bytes"))),
             ("bitrate", bitrate_text(output)),
             ("frame", f"{output.get('width')}x{output.get('height')}"),
             *quality_fact(row.get("quality") or sidecar.get("quality")),
             *credentials_fact(row.get("credentials") or sidecar.get("credentials")))
    return "<dl>" + "".join(f"<dt>{name}</dt><dd>{escape(value)}</dd>"
                            for name, value in facts) + "</dl>"


def credentials_fact(facts):
    """The tile's content credentials (C2PA): what they state and who signed; nothing for
    an export that carries none."""
    return (("C2PA", credentials_text(facts)),) if facts else ()


def quality_fact(quality):
    """The tile's score against the source, the metric named (mean/p5/worst), or a
    remux's proof; nothing for an export made before the check."""
    if not quality:
        return ()
    if quality.get("metric") == "packets":
        return (("quality", "remux: packets identical"),)
    facts = ((quality["metric"].upper(),
              f"{quality['mean']:g} mean, {quality['p5']:g} p5, {quality['worst']:g} worst"),)
    colour = quality.get("colour") or {}
    if colour.get("frames"):
        facts += (("colour ΔE", f"{colour['mean']:g} mean, {colour['worst']:g} worst "
                                f"(from {colour.get('source', '?')})"),)
    return facts


def picture_html(row, sidecar):
    """The poster, linked to the video; a placeholder when there is no video to show."""
    poster = sidecar.get("poster") if sidecar else None
    if row["status"] not in MADE or not poster:
        words = {"failed": "failed", "pending": "not exported yet"}.get(row["status"], "no poster")
        return f'<div class="placeholder">{escape(words)}</div>'

    folder = posixpath.dirname(row["path"])
    # the query changes with the image, so a browser never shows a cached older poster
    source = f"{quote(posixpath.join(folder, poster['path']))}?v={poster['sha256'][:12]}"
    width, height = poster["width"] // POSTER_SCALE, poster["height"] // POSTER_SCALE
    alt = f"{row['platform']} poster of {row['title_id']}"
    return (f'<a href="{href(row["path"])}"><img class="poster" src="{attr(source)}" '
            f'width="{width}" height="{height}" alt="{attr(alt)}" loading="lazy" '
            f"onerror=\"this.classList.add('missing')\"></a>")


def caption_html(metadata):
    """The caption as it will be posted; the title too where it is a separate field."""
    title, caption = metadata.get("title") or "", metadata.get("caption") or ""
    heading = (f'<p class="title">{escape(title)}</p>'
               if title and not caption.startswith(title) else "")
    return heading + (f'<p class="caption">{escape(caption)}</p>' if caption else "")


def tile_html(row, sidecar, metadata):
    """One platform of a title: poster, status badge, facts, caption or failure cause."""
    status = row["status"]
    parts = [picture_html(row, sidecar),
             f'<div class="head"><span class="platform">{escape(row["platform"])}</span>'
             f'<span class="badge {attr(status)}">{escape(status)}</span></div>']
    if status in MADE and sidecar:
        parts.append(facts_html(row, sidecar))
        parts.append(caption_html(metadata or {}))
    if status == "failed":
        parts.append(f'<p class="cause">{escape(row.get("cause") or "unknown cause")}</p>')
    parts.append(upload_html(row))
    if status in MADE and "queue" in row:
        parts.append(request_html(row))
    return (f'<figure class="export" data-platform="{attr(row["platform"])}" '
            f'data-status="{attr(status)}">' + "".join(parts) + "</figure>")


def is_web_url(url):
    return isinstance(url, str) and url.lower().startswith(("https://", "http://"))


def content_security_policy():
    """The page runs its own script and style and nothing else: no other script, no
    form posting, no base change; images and videos only from beside the page."""
    def source_hash(text):
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
    return ("default-src 'none'; img-src 'self' file:; media-src 'self' file:; "
            f"style-src {source_hash(STYLE)}; script-src {source_hash(SCRIPT)}; "
            "base-uri 'none'; form-action 'none'")


def request_html(row):
    """What its upload request posts it as: privacy, the declarations (or that one is
    missing), and where it stands in the queue (`doit uploads`)."""
    def declared(value):
        return ("not declared" if value is None else "partly" if value == "partly"
                else "yes" if value else "no")
    words = [row.get("privacy") or "privacy not set",
             f"for kids: {declared(row.get('made_for_kids'))}",
             f"AI: {declared(row.get('ai_generated'))}"]
    queue = row["queue"]
    if queue == "needs":
        queue = "needs " + ", ".join(row.get("needs") or [])
    return (f'<p class="request" data-queue="{attr(row["queue"])}">{escape(" · ".join(words))}'
            f' · queue: {escape(queue)}</p>')


def upload_html(row):
    """The last upload of the export, linked, and whether that copy is outdated."""
    upload = row.get("uploaded")
    if not upload:
        return '<p class="upload none">not uploaded</p>'
    when = escape(upload["at"][:10])
    post = escape(upload["id"])
    if is_web_url(upload.get("url")):      # never javascript:, data: or the like
        post = f'<a href="{attr(upload["url"])}" rel="noreferrer">{post}</a>'
    if row.get("upload_outdated"):
        return (f'<p class="upload outdated">upload outdated: {post} ({when}) is not the '
                "current export</p>")
    return f'<p class="upload">uploaded {when}: {post}</p>'


CARD_START = '<article class="card" '
CARD_END = "</article>"


def card_opening(row):
    """The start of a title's card, the same for each of its rows: how a card of an earlier
    page is found again."""
    return (f'{CARD_START}data-segment="{attr(row["segment"])}" '
            f'data-age="{attr(row["age"])}" data-title="{attr(row["title_id"])}" ')


def card_html(rows, sidecars, metadata):
    """One title: every platform's tile. Data attributes carry what the filters match."""
    first = rows[0]
    keys = [(row["title_id"], row["platform"]) for row in rows]
    tiles = "".join(tile_html(row, sidecars.get(key), metadata.get(key))
                    for row, key in zip(rows, keys))
    statuses = " ".join(sorted({row["status"] for row in rows}))
    platforms = " ".join(row["platform"] for row in rows)
    return (f'{card_opening(first)}'
            f'data-platform="{attr(platforms)}" data-status="{attr(statuses)}">'
            f'<h2>{escape(first["title_id"])}</h2>'
            f'<p class="where">{escape(first["segment"])} / {escape(first["age"])}</p>'
            f'<div class="exports">{tiles}</div></article>')


def select_html(name, label, values):
    options = "".join(f'<option value="{attr(v)}">{escape(v)}</option>' for v in values)
    return (f'<label>{escape(label)}<select name="{attr(name)}">'
            f'<option value="">all</option>{options}</select></label>')


def title_of(row):
    return (row["segment"], row["age"], row["title_id"])


def grouped_by_title(rows):
    """{(segment, age, title_id): its rows}, in registry order (segment, age, title,
    platform)."""
    groups = {}
    for row in rows:
        key = title_of(row)
        if key in groups:
            groups[key].append(row)
        else:
            groups[key] = [row]
    return dict(sorted(groups.items()))


def by_title(rows):
    """Rows grouped per title, in registry order (segment, age, title, platform)."""
    return list(grouped_by_title(rows).values())


def page_parts(totals, segments, ages, platforms, source=""):
    """The page around its cards: (head, tail). `totals`: the registry's over all exports;
    the filters offer these segments, ages and platforms; `source` names what the page is
    made from (the registry's state, see page_source_of). The cards go between the two,
    joined by CARD_SEPARATOR."""
    summary = " · ".join([*(f"{totals[s]} {s}" for s in STATUSES),
                          format_size(totals["size_bytes"]),
                          format_duration(totals["duration_s"])])
    filters = "".join((
        select_html("segment", "Segment", sorted(segments)),
        select_html("age", "Age", sorted(ages)),
        select_html("platform", "Platform", platforms),
        select_html("status", "Status", STATUSES)))
    head = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{attr(content_security_policy())}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>reelexport gallery</title>
<meta name="{SOURCE_META}" content="{attr(source)}">
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>Exports</h1>
<p class="totals">{escape(summary)} · <a href="registry.json">registry.json</a></p>
<form id="filters">{filters}<output id="shown"></output></form>
</header>
<main>
"""
    tail = f"""
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""
    return head, tail


CARD_SEPARATOR = "\n"


def gallery_html(document, sidecars, metadata, source=""):
    """The page. `sidecars` and `metadata` map (title_id, platform) to the parsed files of
    the made exports; rows without them show their status only; `source` names what the
    page is made from (see page_source_of)."""
    rows = document["exports"]
    head, tail = page_parts(document["totals"]["all"], {r["segment"] for r in rows},
                            {r["age"] for r in rows}, document["platforms"], source)
    cards = CARD_SEPARATOR.join(card_html(group, sidecars, metadata)
                                for group in by_title(rows))
    return head + cards + tail


def tile_parts(sidecar, metadata):
    """Only what a tile shows."""
    kept_sidecar = tile_facts(sidecar)
    kept_metadata = ({k: metadata.get(k) for k in ("title", "caption")} if metadata else None)
    return kept_sidecar, kept_metadata


@functools.cache
def card_code():
    """A digest of the code that makes a card (this module, the formatting helpers, the
    facts kept of a sidecar): a page made by other code gives no card to reuse."""
    digest = hashlib.blake2b(digest_size=8)
    for module in (sys.modules[__name__], formatting, records):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def page_source_of(state):
    """What a page records of its source: the card code and the registry's state."""
    return f"{card_code()} {state}"


def made_card(build, title, rows):
    """The card of one title's rows, its made exports' sidecars and captions read (`title`:
    the library's Title, None for a title that has left it: its tiles show their status)."""
    sidecars, metadata = {}, {}
    for row in rows:
        if row["status"] not in MADE or title is None or row["platform"] not in build.all_specs:
            continue
        job = build.job(title, build.all_specs[row["platform"]])
        key = (row["title_id"], row["platform"])
        parts = tile_parts(read_record(job.path("sidecar")), read_json(job.path("metadata")))
        if parts[0]:
            sidecars[key] = parts[0]
        metadata[key] = parts[1]
    return card_html(rows, sidecars, metadata)
