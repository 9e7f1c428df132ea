"""{exports}/.view-index.json: which bytes of registry.json and index.html are whose.

Both files are views regenerated from doit's DB and the sidecars, 40 MB each at 10,000
titles. A run that changed a few titles makes only their rows and cards again and carries
the other titles' bytes from the files in place (report/splice.py), when this index says
where each title's bytes are, what its rows add to the totals, and which versions of the
two files it describes: their states (inode, size, mtime, ctime: both files are replaced,
never written in place, so an edit by hand changes the state), the history the rows were
made with and the code that made them. Any of those differing, or no index, and the view
is regenerated whole (report/ledger.py) and indexed again; the index is written last, so a
run killed before it leaves an index of older files, which no longer match.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from exporter.model import layout
from exporter.model.files import file_state, read_json, write_json_atomic
from exporter.report.registry import upload_standing

INDEX_VERSION = 1
REPORT_DIR = Path(__file__).resolve().parent
MODEL_DIR = REPORT_DIR.parent / "model"
# the code whose output the carried bytes are: rows, totals, cards, and what they read
VIEW_CODE = (REPORT_DIR / "registry.py", REPORT_DIR / "ledger.py", REPORT_DIR / "splice.py",
             REPORT_DIR / "gallery.py", REPORT_DIR / "formatting.py", Path(__file__),
             MODEL_DIR / "records.py", MODEL_DIR / "history.py")


def view_code():
    """A digest of the code that makes the registry's rows and the gallery's cards."""
    digest = hashlib.blake2b(digest_size=8)
    for path in VIEW_CODE:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def index_path(settings):
    return settings.exports / layout.VIEW_INDEX


def state_of(path):
    """file_state as JSON gives it back (a list), to compare with a saved one."""
    state = file_state(path)
    return list(state) if state is not None else None


@dataclass
class TitleView:
    """One title's part of the view: its rows' bytes in registry.json ([start, end)), its
    card's in index.html, what each row adds to the totals (registry.row_count, in row
    order), whether every row is an export made and up to date (a title whose rows are
    not is never carried), and the first publish_at still to come among rows waiting to be
    uploaded (their `queue` changes when it passes): None when none."""

    key: str                        # segment/age/title_id
    rows: tuple[int, int]
    card: tuple[int, int]
    counts: list[tuple]
    exported: bool
    due: str | None = None

    @property
    def order(self):
        """(segment, age, title_id): the registry's order of titles."""
        return tuple(self.key.split("/"))


def all_exported(rows, platforms):
    """Every platform of the title has a row, each an export made and up to date."""
    return ([row["platform"] for row in rows] == platforms
            and all(row["status"] == "exported" for row in rows))


def due_of(rows, now=None):
    """The first publish_at still to come of the rows waiting in the upload queue (the
    moment their `queue` changes), or None."""
    now = now or datetime.now(timezone.utc)
    moments = []
    for row in rows:
        moment = row.get("publish_at")
        if not isinstance(moment, str) or upload_standing(row, now)[0] not in ("ready",
                                                                               "needs"):
            continue
        try:
            when = datetime.fromisoformat(moment)
        except ValueError:
            continue
        if when.tzinfo is not None and when > now:
            moments.append((when, moment))
    return min(moments)[1] if moments else None


class ViewIndex:
    """A saved index: the titles in registry order and where their bytes are."""

    def __init__(self, document):
        self.document = document
        self.titles = document["titles"]
        self.kinds = [tuple(kind) for kind in document["kinds"]]

    def title(self, place):
        """The TitleView of the title at `place` (its position in the registry)."""
        document = self.document
        first, count = document["first_row"][place], document["row_counts"][place]
        kinds = self.kinds
        counts = [(kinds[kind], size, duration) for kind, size, duration in
                  zip(document["row_kinds"][first:first + count],
                      document["sizes"][first:first + count],
                      document["durations"][first:first + count])]
        rows, cards = document["rows"], document["cards"]
        return TitleView(self.titles[place], (rows[2 * place], rows[2 * place + 1]),
                         (cards[2 * place], cards[2 * place + 1]), counts,
                         bool(document["exported"][place]),
                         document["due"].get(str(place)))

    def span(self, name, first, end):
        """[start, end) of the bytes of titles first..end-1 (consecutive) in one file:
        "rows" for the registry, "cards" for the page."""
        spans = self.document[name]
        return spans[2 * first], spans[2 * end - 1]

    def counts(self, first, end):
        """registry.row_count of every row of titles first..end-1, in order."""
        document = self.document
        start = document["first_row"][first]
        stop = document["first_row"][end - 1] + document["row_counts"][end - 1]
        return zip(map(self.kinds.__getitem__, document["row_kinds"][start:stop]),
                   document["sizes"][start:stop], document["durations"][start:stop])

    @property
    def history(self):
        """The history's state the rows were made with (as the stamp records it)."""
        return self.document["history"]

    def page_indexed(self, settings):
        """The gallery in place is the one this index describes."""
        state = state_of(settings.exports / layout.GALLERY_PAGE)
        return state is not None and self.document["gallery"] == state


def trusted_index(settings, platforms):
    """The saved index when it describes registry.json as it is now, made by this code for
    these platforms; else None. Whether it describes index.html too: `page_indexed`."""
    document = read_json(index_path(settings))
    try:
        if (document["version"] != INDEX_VERSION or document["code"] != view_code()
                or document["platforms"] != sorted(platforms)
                or document["registry"] is None
                or document["registry"] != state_of(settings.registry_file)
                or not isinstance(document["titles"], list)):
            return None
        return ViewIndex(document)
    except (KeyError, TypeError):     # another version's layout, or not an index at all
        return None


class IndexColumns:
    """The next index, column by column, in registry order: titles made this run one by
    one (`title`), titles carried over a run at a time (`carried`: their columns sliced
    from the old index, their offsets moved by what changed before them)."""

    def __init__(self, old=None):
        # the old index's kinds keep their numbers: a carried run's row_kinds hold them
        self.kinds = [list(kind) for kind in old.kinds] if old is not None else []
        self.kind_ids = {kind: number for number, kind in enumerate(old.kinds)} if old else {}
        self.columns = {name: [] for name in (
            "titles", "rows", "cards", "exported", "first_row", "row_counts", "row_kinds",
            "sizes", "durations")}
        self.due = {}

    def title(self, view):
        """One title (TitleView) after the others."""
        columns = self.columns
        if view.due:
            self.due[str(len(columns["titles"]))] = view.due
        columns["titles"].append(view.key)
        columns["first_row"].append(len(columns["row_kinds"]))
        columns["row_counts"].append(len(view.counts))
        for kind, size, duration in view.counts:
            kind_id = self.kind_ids.get(kind)
            if kind_id is None:
                kind_id = self.kind_ids[kind] = len(self.kinds)
                self.kinds.append(list(kind))
            columns["row_kinds"].append(kind_id)
            columns["sizes"].append(size)
            columns["durations"].append(duration)
        columns["rows"].extend(view.rows)
        columns["cards"].extend(view.card)
        columns["exported"].append(int(view.exported))

    def carried(self, old, first, end, row_at, card_at):
        """Titles first..end-1 of the `old` index, their rows now at byte `row_at` of the
        registry and their cards at `card_at` of the page."""
        columns, document = self.columns, old.document
        place = len(columns["titles"])
        for moment_place, moment in document["due"].items():
            if first <= int(moment_place) < end:
                self.due[str(place + int(moment_place) - first)] = moment
        rows_from = document["first_row"][first]
        rows_to = document["first_row"][end - 1] + document["row_counts"][end - 1]
        shift_rows = len(columns["row_kinds"]) - rows_from
        columns["first_row"].extend([row + shift_rows
                                     for row in document["first_row"][first:end]])
        for name in ("titles", "exported", "row_counts"):
            columns[name].extend(document[name][first:end])
        for name in ("row_kinds", "sizes", "durations"):
            columns[name].extend(document[name][rows_from:rows_to])
        for name, at in (("rows", row_at), ("cards", card_at)):
            spans = document[name][2 * first:2 * end]
            shift = at - spans[0]
            columns[name].extend([offset + shift for offset in spans])

    def write(self, settings, platforms, history_state):
        """Save the index of the registry and gallery just written."""
        write_json_atomic(index_path(settings), {
            "version": INDEX_VERSION, "code": view_code(), "platforms": sorted(platforms),
            "history": repr(history_state),
            "registry": state_of(settings.registry_file),
            "gallery": state_of(settings.exports / layout.GALLERY_PAGE),
            "due": self.due, "kinds": self.kinds, **self.columns}, compact=True)


def index_with_history(settings, index, history_state):
    """The same index, for the same files, made with the history as now read (nothing
    in them changed with it)."""
    write_json_atomic(index_path(settings), {**index.document, "history": repr(history_state)},
                      compact=True)
