"""Source metadata.json -> the upload metadata for one platform.

`format_metadata` is pure: (source metadata, platform spec) -> (document, warnings). The upload
step posts the document as-is, so every platform limit is met here, and everything cut, dropped
or changed is one warning line rather than a silent loss. The rules are data (the `metadata:`
section of the platform YAML); docs/metadata.md describes them and where the values come from.
"""

import json
import sys
import unicodedata

import regex

from exporter.model.errors import SourceError
from exporter.model.spec import first_schema_error, load_schema

# Bump when a code change alters the documents produced from the same input and rules:
# it is part of the metadata files' up-to-date check (never of the video's).
FORMAT_VERSION = 1
ELLIPSIS = "\u2026"
UNITS = {"chars": "characters", "bytes": "bytes", "utf16": "UTF-16 units"}
DEFAULT_TEMPLATE = ["{title}", "{description}", "{hashtags} {mentions}"]
PLACEHOLDER = regex.compile(r"\{(title|description|hashtags|mentions)\}")
GRAPHEME = regex.compile(r"\X")
# A hashtag or mention keeps whole grapheme clusters of letters, digits, marks and '_' (a
# mention also '.'): emoji, symbols and punctuation end a tag on every platform.
TAG_CLUSTER = {"#": regex.compile(r"[\p{L}\p{N}_][\p{L}\p{N}\p{Mn}\p{Mc}_\u200c\u200d]*"),
               "@": regex.compile(r"[\p{L}\p{N}_.][\p{L}\p{N}\p{Mn}\p{Mc}_.\u200c\u200d]*")}
# Tags written in the text. Deliberately generous ('##a' counts as 'a'): counting a tag the
# platform would not see costs a slot; missing one it sees can put the post over a limit.
INLINE_TAG = {"#": regex.compile(r"(?<!\w)#+(\w+)"),
              "@": regex.compile(r"(?<![\w@])@+(\w(?:[\w.]*\w)?)")}
KIND = {"#": "hashtag", "@": "mention"}
TRAILING = set(",;:-\u2013\u2014")  # not left dangling before an ellipsis


def load_source_metadata(path):
    """Parse and validate metadata.json; SourceError naming the file and the JSON path."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"{path.name} is missing") from None
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path.name}: not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path.name}: invalid JSON at line {exc.lineno} "
                          f"column {exc.colno}: {exc.msg}") from None
    except ValueError:              # a number of more digits than int() converts
        raise SourceError(f"{path.name}: cannot be read as JSON: a number has more than "
                          f"{sys.get_int_max_str_digits()} digits") from None
    except RecursionError:
        raise SourceError(f"{path.name}: cannot be read as JSON: nested too deeply") from None
    try:
        problem = first_schema_error(document, load_schema("source-metadata"))
    except RecursionError:
        raise SourceError(f"{path.name}: nested too deeply to be checked") from None
    if problem is not None:
        raise SourceError(f"{path.name}: {shorten(problem)}")
    return document


def shorten(line, limit=300):
    """A message line of at most `limit` characters (an error may quote a huge value)."""
    return line if len(line) <= limit else line[:limit - 1] + ELLIPSIS


def measure(text, count):
    """Length as the platform counts it: code points, UTF-8 bytes or UTF-16 code units."""
    if count == "bytes":
        return len(text.encode("utf-8"))
    if count == "utf16":
        return len(text.encode("utf-16-le")) // 2
    return len(text)


def plural(n, word):
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def cut(text, limit, count):
    """`text` within `limit` units: whole grapheme clusters, then an ellipsis.

    Ends at a word boundary when one lies in the second half of what fits (one long word, or
    a script written without spaces, is cut between clusters instead of emptied). A word
    holding '#' or '@' is never cut inside: '@alice' cut to '@ali' would tag someone else.
    Returns "" when not even one cluster fits.
    """
    if measure(text, count) <= limit:
        return text
    mark = ELLIPSIS if measure(ELLIPSIS, count) < limit else ""
    room = limit - measure(mark, count)
    clusters = GRAPHEME.findall(text)
    end = used = 0
    while end < len(clusters) and used + measure(clusters[end], count) <= room:
        used += measure(clusters[end], count)
        end += 1
    if end < len(clusters) and not clusters[end].isspace():
        start = max((i for i in range(end) if clusters[i].isspace()), default=0)
        if (start and start >= end // 2) or set("#@") & set("".join(clusters[start:end])):
            end = start
    kept = clusters[:end]
    while kept and (kept[-1].isspace() or kept[-1] in TRAILING):
        kept.pop()
    return "".join(kept) + mark if kept else ""


def clean_text(text, forbidden, one_line):
    """NFC text without forbidden characters, controls or lone surrogates -> (text, removed).

    Whole clusters go, so a combining mark never lands on a neighbour. A title is one line.
    """
    text = unicodedata.normalize("NFC", text)
    text = regex.sub(r"\s+", " ", text) if one_line else regex.sub(r"\r\n?", "\n", text)
    kept, removed = [], []
    for cluster in GRAPHEME.findall(text):
        bad = [c for c in cluster if c in forbidden or unicodedata.category(c) == "Cs"
               or (unicodedata.category(c) == "Cc" and c not in "\n\t")]
        (removed if bad else kept).append(cluster)
    return "".join(kept).strip(), removed


def normalise_tags(raw_tags, sigil, forbidden, notes):
    """'#Summer Vibes!' -> 'SummerVibes': `sigil` and spaces stripped, characters a tag cannot
    hold dropped (with a warning), duplicates dropped case-insensitively, order kept."""
    kind, kept, seen, duplicates = KIND[sigil], [], set(), []
    for raw in raw_tags:
        body = "".join(unicodedata.normalize("NFC", raw).split()).lstrip(sigil)
        tag = "".join(c for c in GRAPHEME.findall(body)
                      if TAG_CLUSTER[sigil].fullmatch(c) and not set(c) & set(forbidden))
        tag = tag.strip(".")
        if not tag:
            notes.append(f"{kind} {raw!r} dropped: nothing in it a {kind} can hold")
            continue
        if tag != body:
            notes.append(f"{kind} {raw!r} normalised to {tag!r}")
        if tag.casefold() in seen:
            duplicates.append(tag)
            continue
        seen.add(tag.casefold())
        kept.append(tag)
    if duplicates:
        notes.append(f"dropped {plural(len(duplicates), 'duplicate ' + kind)}: "
                     + ", ".join(duplicates))
    return kept


def inline_tags(sigil, *texts):
    """Distinct tags written in `texts`, in order, by casefolded key."""
    found = {}
    for text in texts:
        for match in INLINE_TAG[sigil].finditer(text):
            found.setdefault(match[1].casefold(), match[1])
    return found


def select_tags(sigil, listed, required, texts, limit, notes):
    """Tags kept under `limit` per post, written inline or listed -> (texts, block).

    The platforms count occurrences (a tag written 35 times is 35 of Instagram's 5), so under
    a limit each tag keeps its sigil once: at its first occurrence. Priority: required tags,
    then tags written in the text, then the list. An inline tag over the limit, or repeated,
    loses its sigil (it stays a word); a listed one is dropped.
    """
    kind = KIND[sigil]
    inline = inline_tags(sigil, *texts)
    keep = {}
    for tag in [*required, *inline.values(), *listed]:
        if limit is None or len(keep) < limit:
            keep.setdefault(tag.casefold(), tag)
    over_inline = [tag for key, tag in inline.items() if key not in keep]
    if limit is not None:
        seen, repeated = set(), []

        def demote(match):
            key = match[1].casefold()
            if key not in keep:
                return match[1]
            if key in seen:
                repeated.append(match[1])
                return match[1]
            seen.add(key)
            return match[0]
        texts = [INLINE_TAG[sigil].sub(demote, text) for text in texts]
        if repeated:
            notes.append(f"{plural(len(repeated), kind)} repeated in the title or description: "
                         f"'{sigil}' kept on the first of each only (the limit of {limit} "
                         "counts each occurrence): " + ", ".join(dict.fromkeys(repeated)))
    if over_inline:
        notes.append(f"{plural(len(over_inline), kind)} written in the title or description "
                     f"over the limit of {limit}: '{sigil}' removed from "
                     + ", ".join(over_inline))
    listed_keys = {tag.casefold() for tag in listed}
    dropped = [tag for tag in listed if tag.casefold() not in keep]
    dropped += [tag for tag in required if tag.casefold() not in keep]
    if dropped:
        notes.append(f"dropped {plural(len(dropped), kind)} over the limit of {limit}: "
                     + ", ".join(dropped))
    block = [tag for tag in listed if tag.casefold() in keep]
    block += [tag for tag in required
              if tag.casefold() in keep and tag.casefold() not in listed_keys]
    return texts, block


def render(template, parts):
    """The caption: template paragraphs filled in one pass, empty ones left out."""
    values = {"title": parts["title"], "description": parts["description"],
              "hashtags": " ".join("#" + tag for tag in parts["hashtags"]),
              "mentions": " ".join("@" + name for name in parts["mentions"])}
    paragraphs = (PLACEHOLDER.sub(lambda m: values[m[1]], p).strip() for p in template)
    return "\n\n".join(p for p in paragraphs if p)


def clean_template(template, forbidden):
    """The template's own words obey forbidden_chars too; its placeholders are kept."""
    def clean(piece):
        return "".join(c for c in piece if c not in forbidden)
    return ["".join(clean(piece) if i % 2 == 0 else "{" + piece + "}"
                    for i, piece in enumerate(PLACEHOLDER.split(paragraph)))
            for paragraph in template]


def uses(template, name):
    return any("{" + name + "}" in paragraph for paragraph in template)


def fit_caption(template, parts, limit, count, required, notes):
    """Shrink `parts` until the caption fits: the description first, then the title, then the
    hashtags and mentions from the end. Required hashtags always stay."""
    unit, required_keys = UNITS[count], {tag.casefold() for tag in required}

    def over():
        return measure(render(template, parts), count) - limit

    for name in ("description", "title"):
        before = parts[name]
        while over() > 0 and uses(template, name) and parts[name]:
            parts[name] = cut(parts[name], measure(parts[name], count) - over(), count)
        if parts[name] != before:
            notes.append(f"caption: {name} cut from {measure(before, count):,} to "
                         f"{measure(parts[name], count):,} {unit} to fit the limit of {limit:,}")
    for name, sigil in (("hashtags", "#"), ("mentions", "@")):
        keep = required_keys if sigil == "#" else set()
        dropped = []
        while over() > 0 and uses(template, name):
            optional = [i for i, tag in enumerate(parts[name]) if tag.casefold() not in keep]
            if not optional:
                break
            dropped.insert(0, parts[name].pop(optional[-1]))
        if dropped:
            notes.append(f"caption: dropped {plural(len(dropped), KIND[sigil])} to fit the "
                         f"limit of {limit:,} {unit}: " + ", ".join(dropped))


def fit_tags(candidates, limit, required, notes):
    """The first tags whose total stays within `limit` characters, counted as YouTube does:
    commas between tags count, and a tag with a space counts two quotation marks. Room is
    kept for the required tags (YouTube's Shorts) wherever they come: never the ones dropped
    (unless they alone exceed the limit)."""
    def cost(tag):
        return len(tag) + 1 + (2 if " " in tag else 0)

    required_keys = {tag.casefold() for tag in required}
    room = limit + 1 - sum(cost(tag) for tag in candidates if tag.casefold() in required_keys)
    if room < 0:            # the required tags alone are over the limit: it still holds
        required_keys, room = set(), limit + 1
    kept, full = [], False
    for tag in candidates:
        if tag.casefold() in required_keys:
            kept.append(tag)
        elif not full and cost(tag) <= room:
            room -= cost(tag)
            kept.append(tag)
        else:
            full = True
    if len(kept) < len(candidates):
        dropped = [tag for tag in candidates if tag not in kept]
        notes.append(f"tags: dropped {plural(len(dropped), 'tag')} over the total of "
                     f"{limit:,} characters: " + ", ".join(dropped))
    return kept


def format_metadata(source, spec):
    """(document, warnings): the metadata for `spec`'s platform and one line per change made.

    Raises SourceError when no title is left: an empty title is never emitted, and guessing
    one (from the description, say) would publish words nobody chose as a title.
    """
    rules, notes = spec.metadata, []
    merged = {**source, **source.get("platforms", {}).get(spec.name, {})}
    forbidden = rules.get("forbidden_chars", "")
    limits = rules.get("limits", {})
    template = clean_template(rules.get("caption_template", DEFAULT_TEMPLATE), forbidden)

    texts = {}
    for name, one_line in (("title", True), ("description", False)):
        texts[name], removed = clean_text(merged.get(name, ""), forbidden, one_line)
        if removed:
            shown = ", ".join(sorted({repr(c) for c in removed}))
            notes.append(f"{name}: removed {plural(len(removed), 'character')} it cannot "
                         f"contain: {shown}")
    if not texts["title"]:
        raise SourceError(f"title {merged.get('title', '')[:40]!r} is empty once spaces, "
                          f"control characters and characters {spec.name} refuses are removed")

    required = normalise_tags(rules.get("required_hashtags", []), "#", forbidden, [])
    blocks = {}
    for sigil, key in (("#", "hashtags"), ("@", "mentions")):
        listed = normalise_tags(merged.get(key, []), sigil, forbidden, notes)
        (texts["title"], texts["description"]), blocks[key] = select_tags(
            sigil, listed, required if sigil == "#" else [],
            [texts["title"], texts["description"]], rules.get(f"max_{key}"), notes)

    for name in ("title", "description"):
        if name in limits:
            limit, count = limits[name]["max"], limits[name]["count"]
            before, texts[name] = texts[name], cut(texts[name], limit, count)
            if texts[name] != before:
                notes.append(f"{name}: cut from {measure(before, count):,} to "
                             f"{measure(texts[name], count):,} {UNITS[count]} (limit {limit:,})")
    if not texts["title"]:
        raise SourceError(f"title: nothing of it fits the {spec.name} limit without cutting "
                          f"inside a character or a tag")

    parts = {**texts, **blocks}
    caption_limit = limits.get("caption")
    if caption_limit:
        fit_caption(template, parts, caption_limit["max"], caption_limit["count"], required,
                    notes)
    # Each tag once per post: a listed tag the posted text already carries is not repeated.
    # Done after fitting, against the text as cut, so a required hashtag is never lost.
    posted = [parts[n] for n in ("title", "description") if uses(template, n)]
    if not uses(template, "title"):
        posted.append(texts["title"])          # posted as a field of its own (YouTube)
    for sigil, key in (("#", "hashtags"), ("@", "mentions")):
        written = inline_tags(sigil, *posted)
        parts[key] = [tag for tag in parts[key] if tag.casefold() not in written]
    caption = render(template, parts)
    if caption_limit and measure(caption, caption_limit["count"]) > caption_limit["max"]:
        # Only the template's own text and the required hashtags are left: a spec problem,
        # but the upload must still be accepted.
        limit, count = caption_limit["max"], caption_limit["count"]
        before, caption = caption, cut(caption, limit, count)
        notes.append(f"caption: cut from {measure(before, count):,} to "
                     f"{measure(caption, count):,} {UNITS[count]}: the template and required "
                     f"hashtags alone exceed the limit of {limit:,}")

    document = {
        "platform": spec.name,
        "title": texts["title"],
        "description": texts["description"],
        "hashtags": parts["hashtags"],
        "mentions": parts["mentions"],
        "caption": caption,
        "language": merged.get("language"),
    }
    if "tags_total_max_chars" in rules:
        titled = [] if uses(template, "title") else [texts["title"]]
        candidates = list(inline_tags("#", *titled, caption).values())
        document["tags"] = fit_tags(candidates, rules["tags_total_max_chars"], required,
                                    notes)
    return document, notes
