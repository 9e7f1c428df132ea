"""registry.json and index.html after a run: written from title entries, the unchanged
ones carried over as bytes, and indexed for the next run.

The same code writes both whether a title's bytes are carried (report/splice.py) or made
again: a full regeneration is the case where none is carried, so a spliced file is the
file a full regeneration writes, byte for byte (tests/test_view.py compares them). The
totals are summed from each row's count in row order either way (registry.totals_of).
"""

import json
from dataclasses import dataclass, replace
from itertools import chain

from exporter.model.files import write_bytes_atomic
from exporter.model.history import distribution_index
from exporter.report.gallery import (
    CACHE_NAME,
    CARD_SEPARATOR,
    PAGE,
    made_card,
    page_parts,
    page_source_of,
)
from exporter.report.ledger import registry_document, with_history
from exporter.report.registry import (
    ROW_SEPARATOR,
    ROWS_OPENING,
    registry_bytes,
    registry_state,
    row_bytes,
    row_count,
    totals_of,
)
from exporter.report.splice import Carried, Entry, entries_of, old_rows, spliced_entries
from exporter.report.view_index import (
    IndexColumns,
    TitleView,
    all_exported,
    due_of,
    index_with_history,
    trusted_index,
)


@dataclass
class View:
    """The registry just written, as its items (splice.Carried runs of titles and
    splice.Entry titles): what the gallery and the next index are made from."""

    items: list
    chunks: list                    # each item's rows' bytes in registry.json
    row_offsets: list[int]          # where each item's rows start there
    platforms: list[str]
    totals: dict
    history_state: object
    index: object                   # ViewIndex of the files replaced, None when untrusted
    old_registry: "InPlace"         # the registry replaced
    changed: bool                   # registry.json was written


class InPlace:
    """registry.json as it is before this run replaces it, read whole only when it must be:
    a splice that changes nothing reads the few titles made again and the totals."""

    def __init__(self, path):
        self.path = path
        self.whole_bytes = None
        try:
            self.exists = path.is_file()
        except OSError:
            self.exists = False

    def whole(self):
        """Its bytes; None when there is no such file or it cannot be read."""
        if self.whole_bytes is None and self.exists:
            try:
                self.whole_bytes = self.path.read_bytes()
            except OSError:
                self.exists = False
        return self.whole_bytes

    def __getitem__(self, part):
        if self.whole_bytes is not None or not self.exists:
            return (self.whole_bytes or b"")[part]
        try:
            with open(self.path, "rb") as file:
                file.seek(part.start)
                return file.read(part.stop - part.start) if part.stop is not None else file.read()
        except OSError:
            return b""


def parsed(text):
    try:
        return json.loads(text) if text else None
    except (ValueError, RecursionError):
        return None


def regenerate_registry(build, outcomes, check):
    """Write registry.json for this run's `outcomes` (task name -> doit's decision) and
    what the library stamp proves (`check`: StampCheck or None); untouched when nothing
    changed. Spliced from the carried titles' bytes when the index describes the files in
    place and the stamp proves the history they were made with; else made whole, the
    previous rows trusted only where the index or the stamp vouches for the file.

    A full check (no stamp) splices too: a title whose every export doit found up to date
    this run keeps its bytes, when the index's rows were made with the history as it is
    now; the 40 MB registry of 10,000 titles is then never parsed whole (200 MB)."""
    settings = build.settings
    history, history_state = distribution_index(settings.exports)
    index = trusted_index(settings, build.all_specs)
    old = InPlace(settings.registry_file)
    if (index is not None and old.exists and index.page_indexed(settings)
            and rows_history_holds(index, check, history_state)):
        held = check.held if check is not None else {}
        entries = spliced_entries(build, index, held, outcomes, history, old)
    else:
        proven = check.proven_outcomes(build.all_jobs) if check is not None else {}
        previous = parsed(old.whole()) if index is not None or check is not None else None
        document = registry_document(build, {**proven, **outcomes}, previous, history)
        if index is not None and index.titles and document == previous:
            # the file in place is the file (the index describes it): no row written again
            entries = [Carried(0, len(index.titles))]
        else:
            entries = entries_of(document["exports"], index)
    return written_view(settings, entries, sorted(build.all_specs), index, old,
                        history_state)


def rows_history_holds(index, check, history_state):
    """The index's rows were made with the history as it is now (with a stamp: the history
    the stamp proves, unchanged since)."""
    if check is not None:
        return not check.history_changed and index.history == check.stamp.get("history")
    return index.history == repr(history_state)


def refresh_view(build):
    """Rewrite registry.json with the history as it is now (uploads recorded since it was
    written); nothing else is read. The View written, or None when there is no registry
    yet (the next run writes it, history included)."""
    settings = build.settings
    history, history_state = distribution_index(settings.exports)
    old = InPlace(settings.registry_file)
    previous = parsed(old.whole())
    if not isinstance(previous, dict) or "exports" not in previous:
        return None
    document = with_history(previous, history)
    index = trusted_index(settings, document["platforms"])
    return written_view(settings, entries_of(document["exports"], index),
                        document["platforms"], index, old, history_state)


def written_view(settings, items, platforms, index, old, history_state):
    """Write registry.json from `items` (when its bytes differ from `old`'s: InPlace)."""
    same = unchanged_rows(items, index, old, platforms)
    if same is not None:
        chunks, totals = same
        row_offsets = [index.span("rows", item.first, item.end)[0] if isinstance(item, Carried)
                       else item.old.rows[0] for item in items]
        return View(items, chunks, row_offsets, platforms, totals, history_state, index, old,
                    False)
    chunks, counts = [], []
    carried_bytes = memoryview(old.whole()) if old.whole() is not None else None
    for item in items:
        if isinstance(item, Carried):
            start, end = index.span("rows", item.first, item.end)
            chunks.append(carried_bytes[start:end])
            counts.append(index.counts(item.first, item.end))
        else:
            chunks.append(ROW_SEPARATOR.join(map(row_bytes, item.rows)))
            counts.append(list(map(row_count, item.rows)))
    totals = totals_of(chain.from_iterable(counts))
    data = registry_bytes(chunks, platforms, totals)
    changed = (data != old.whole()
               and write_bytes_atomic(settings.registry_file, data, before=old.whole()))
    return View(items, chunks, offsets(len(ROWS_OPENING), chunks, len(ROW_SEPARATOR)),
                platforms, totals, history_state, index, old, changed)


ROWS_CLOSING = len(b"\n  ],\n")
READ_WHOLE_FROM = 64        # titles made again: fewer are read alone, more with the file


def unchanged_rows(items, index, old, platforms):
    """(chunks, totals) when `items` are the titles of the registry in place, in its
    order, each title made again the same bytes as before: every row is the same, hence
    the totals, read from the file (chunks: a made title's bytes, None for a carried run);
    else None, and the file is written again."""
    if index is None or not old.exists or not index.titles:
        return None
    if sum(not isinstance(item, Carried) for item in items) > READ_WHOLE_FROM:
        old.whole()
    place, chunks = 0, []
    for item in items:
        if isinstance(item, Carried):
            if item.first != place:
                return None
            place = item.end
            chunks.append(None)
            continue
        if (item.old is None or place >= len(index.titles) or index.titles[place] != item.key):
            return None
        chunk = ROW_SEPARATOR.join(map(row_bytes, item.rows))
        if old[item.old.rows[0]:item.old.rows[1]] != chunk:
            return None
        place += 1
        chunks.append(chunk)
    if place != len(index.titles):
        return None
    rest = parsed(b"{\n" + old[index.document["rows"][-1] + ROWS_CLOSING:None])
    if not isinstance(rest, dict) or rest.get("platforms") != platforms or "totals" not in rest:
        return None
    return chunks, rest["totals"]


def offsets(start, chunks, separator):
    """Where each of `chunks` starts once joined by `separator` bytes after `start`."""
    at = []
    for chunk in chunks:
        at.append(start)
        start += len(chunk) + separator
    return at


def write_gallery(build, view, made):
    """Write index.html for the registry just written, and then the index of both; nothing
    when neither file changed and the index describes both (`made`: title ids with an
    export made or failed this run, whose cards are made again: their sidecars and
    captions may differ). A card is carried from the page in place when the index
    describes it and its title's rows are the same bytes as before."""
    settings = build.settings
    page_path = settings.exports / PAGE
    index = view.index
    reuse = index is not None and index.page_indexed(settings)
    if reuse and not view.changed and not made:
        if index.history != repr(view.history_state):   # the same bytes, the same places
            index_with_history(settings, index, view.history_state)
        return False
    if not reuse:
        view = titles_apart(view)
    old_page = page_path.read_bytes() if reuse else None
    carried_page = memoryview(old_page) if reuse else None
    library = {title.key: title for title in build.all_titles}
    cards = []
    for item, chunk in zip(view.items, view.chunks):
        if isinstance(item, Carried):
            start, end = index.span("cards", item.first, item.end)
            cards.append(carried_page[start:end])
            continue
        old = item.old
        if (reuse and old is not None and item.order[2] not in made
                and view.old_registry[old.rows[0]:old.rows[1]] == chunk):
            cards.append(carried_page[old.card[0]:old.card[1]])
        else:
            cards.append(made_card(build, library.get(item.key), item.rows).encode())
    head, tail = page_parts(view.totals["all"], segments_ages(view, index, 0),
                            segments_ages(view, index, 1), view.platforms,
                            page_source_of(registry_state(settings.registry_file)))
    head, separator = head.encode(), CARD_SEPARATOR.encode()
    data = head + separator.join(cards) + tail.encode()
    (settings.exports / CACHE_NAME).unlink(missing_ok=True)
    written = write_bytes_atomic(page_path, data, before=old_page)
    write_index(settings, view, cards, offsets(len(head), cards, len(separator)))
    return written


def titles_apart(view):
    """The view with each carried run as its titles, their rows parsed from the registry in
    place: their cards are made again when the page cannot be carried."""
    items, chunks, row_offsets = [], [], []
    for item, chunk, row_at in zip(view.items, view.chunks, view.row_offsets):
        if not isinstance(item, Carried):
            items.append(item), chunks.append(chunk), row_offsets.append(row_at)
            continue
        run_start = view.index.span("rows", item.first, item.end)[0]
        for place in range(item.first, item.end):
            title = view.index.title(place)
            entry = Entry(title.order, title.key, None, title)
            entry.rows = old_rows(view.old_registry, entry)
            items.append(entry)
            chunks.append(view.old_registry[title.rows[0]:title.rows[1]])
            row_offsets.append(row_at + title.rows[0] - run_start)
    return replace(view, items=items, chunks=chunks, row_offsets=row_offsets)


def segments_ages(view, index, part):
    """The segments (`part` 0) or ages (1) of every title in the view: its filters."""
    found = set()
    for item in view.items:
        if isinstance(item, Carried):
            found.update(key.split("/", 2)[part] for key in index.titles[item.first:item.end])
        else:
            found.add(item.order[part])
    return found


def write_index(settings, view, cards, card_offsets):
    """The index of the registry and page just written (`cards`: each item's bytes in
    the page, at `card_offsets`)."""
    columns = IndexColumns(view.index)
    for item, chunk, row_at, card, card_at in zip(view.items, view.chunks, view.row_offsets,
                                                  cards, card_offsets):
        if isinstance(item, Carried):
            columns.carried(view.index, item.first, item.end, row_at, card_at)
        else:
            columns.title(TitleView(item.key, (row_at, row_at + len(chunk)),
                                    (card_at, card_at + len(card)),
                                    list(map(row_count, item.rows)),
                                    all_exported(item.rows, view.platforms),
                                    due_of(item.rows)))
    columns.write(settings, view.platforms, view.history_state)
