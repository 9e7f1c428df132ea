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
from pathlib import Path

from exporter.model import layout
from exporter.model.files import file_state, read_json, write_json_atomic

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


def write_index(settings, titles, platforms, history_state):
    """Save the index of the registry and gallery just written (`titles`: TitleView, in
    registry order)."""
    kinds, kind_ids = [], {}
    row_kinds, sizes, durations, first_row, row_counts = [], [], [], [], []
    rows, cards, exported, due = [], [], [], {}
    for place, title in enumerate(titles):
        first_row.append(len(row_kinds))
        row_counts.append(len(title.counts))
        for kind, size, duration in title.counts:
            kind_id = kind_ids.get(kind)
            if kind_id is None:
                kind_id = kind_ids[kind] = len(kinds)
                kinds.append(list(kind))
            row_kinds.append(kind_id)
            sizes.append(size)
            durations.append(duration)
        rows.extend(title.rows)
        cards.extend(title.card)
        exported.append(int(title.exported))
        if title.due:
            due[str(place)] = title.due
    write_json_atomic(index_path(settings), {
        "version": INDEX_VERSION, "code": view_code(), "platforms": sorted(platforms),
        "history": repr(history_state),
        "registry": state_of(settings.registry_file),
        "gallery": state_of(settings.exports / layout.GALLERY_PAGE),
        "titles": [title.key for title in titles], "rows": rows, "cards": cards,
        "exported": exported, "due": due,
        "first_row": first_row, "row_counts": row_counts, "kinds": kinds,
        "row_kinds": row_kinds, "sizes": sizes, "durations": durations}, compact=True)


def forget_index(settings):
    """Remove the index (the files it describes are about to change another way)."""
    index_path(settings).unlink(missing_ok=True)
