"""Which titles a run carries over in registry.json and index.html as bytes, and the rows
of the others: the view made in proportion to what changed.

A title is carried when the row a full regeneration would give each of its exports is the
row already written, by the same reasoning registry_document uses to carry a row: doit
found (or the library stamp proved) every export of it up to date, each row was an export
made and up to date, nothing it shows from the history has changed (the stamp's history
is the one the rows were made with) and no publish_at of it has passed since (its `queue`
would change). Its card is then the one in place too. Every other title, a title that has
left the library included, is made again from doit's DB and the sidecars (report/ledger.py).
"""

import json
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timezone

from exporter.model.layout import title_id_of
from exporter.report.ledger import export_rows, removed_rows
from exporter.report.registry import row_order, schedule_passed
from exporter.report.view_index import TitleView


@dataclass
class Entry:
    """One title of the view being written: its rows made this run, or None when its
    bytes are carried from the files in place (`old`: where they are, None for a title the
    files did not have)."""

    order: tuple[str, str, str]     # (segment, age, title_id): the registry's order
    key: str                        # segment/age/title_id
    rows: list[dict] | None
    old: TitleView | None


@dataclass
class Carried:
    """Titles first..end-1 of the index, consecutive there and in the files being written:
    their bytes carried over as one piece."""

    first: int
    end: int


def entries_of(rows, index):
    """Entries made of these rows (sorted as the registry sorts them), one per title,
    each with its place in the files in place when `index` (ViewIndex or None) has it."""
    places = {key: place for place, key in enumerate(index.titles)} if index else {}
    entries = {}
    for row in sorted(rows, key=row_order):
        order = (row["segment"], row["age"], row["title_id"])
        entry = entries.get(order)
        if entry is None:
            key = "/".join(order)
            place = places.get(key)
            entry = entries[order] = Entry(order, key, [], None if place is None
                                           else index.title(place))
        entry.rows.append(row)
    return list(entries.values())


def old_rows(old_registry, entry):
    """The rows the files in place have for `entry`'s title, parsed from its bytes."""
    if entry.old is None:
        return []
    start, end = entry.old.rows
    return json.loads(b"[" + old_registry[start:end] + b"]")


def carried_titles(build, index, held, outcomes, now):
    """{title key: place in the index} of the titles carried over (see the module; `held`:
    title key -> the platforms the library stamp proves, StampCheck.held)."""
    platforms = sorted(build.all_specs)
    every = frozenset(platforms)
    library = {title.key: title for title in build.all_titles}
    ran = {title_id_of(name) for name in outcomes}
    exported, due = index.document["exported"], index.document["due"]
    carried = {}
    for place, key in enumerate(index.titles):
        title = library.get(key)
        if title is None or not exported[place]:
            continue
        moment = due.get(str(place))
        if moment is not None and schedule_passed(moment, now):
            continue
        proven = held.get(key, frozenset())
        if title.title_id in ran:
            if any(outcomes.get(f"{platform}:{title.title_id}",
                                "up-to-date" if platform in proven else None) != "up-to-date"
                   for platform in platforms):
                continue
        elif not proven >= every:
            continue
        carried[key] = place
    return carried


def spliced_entries(build, index, held, outcomes, history, old_registry, now=None):
    """The view's items in registry order: Carried runs of titles whose bytes are carried,
    and an Entry for every other title, its rows made again (its previous rows, parsed
    from its bytes alone, carried as registry_document would), titles that have left the
    library included."""
    now = now or datetime.now(timezone.utc)
    carried = carried_titles(build, index, held, outcomes, now)
    places = {key: place for place, key in enumerate(index.titles)}
    remade = [title for title in build.all_titles if title.key not in carried]
    jobs = [build.job(title, spec) for title in remade for spec in build.all_specs.values()]
    rows_before, known = {}, {}
    for title in remade:
        if title.key in places:
            old = Entry((), title.key, None, index.title(places[title.key]))
            for row in old_rows(old_registry, old):
                rows_before[(row["platform"], row["title_id"])] = row
    for job in jobs:
        proven = held.get(job.title.key, ())
        known[job.task_name] = outcomes.get(job.task_name,
                                            "up-to-date" if job.spec.name in proven else None)
    known = {name: outcome for name, outcome in known.items() if outcome is not None}
    rows = export_rows(build, jobs, known, rows_before, history)
    rows.extend(removed_rows(build, history))
    return merged(sorted(carried.values()), entries_of(rows, index), index)


def merged(carried, entries, index):
    """Carried places (ascending) and made entries (in registry order) in registry order,
    consecutive carried places that nothing comes between as one Carried run."""
    def order_of(key):
        return tuple(key.split("/"))
    before = [bisect_left(index.titles, entry.order, key=order_of) for entry in entries]
    items, made = [], 0
    for place in carried:
        while made < len(entries) and before[made] <= place:
            items.append(entries[made])
            made += 1
        last = items[-1] if items else None
        if isinstance(last, Carried) and last.end == place:
            last.end = place + 1
        else:
            items.append(Carried(place, place + 1))
    items.extend(entries[made:])
    return items
