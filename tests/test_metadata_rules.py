"""Metadata rules: table-driven cases on nasty input, and properties checked by hypothesis.

Everything here is pure (no ffmpeg, no files): format_metadata(source, spec) and its helpers.
"""

import dataclasses

import jsonschema
import pytest
import regex
from conftest import SHIPPED_PLATFORMS
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_spec import write_spec

from exporter.metadata import (
    ELLIPSIS,
    INLINE_TAG,
    clean_text,
    cut,
    format_metadata,
    measure,
)
from exporter.model.errors import SourceError, SpecError
from exporter.model.spec import load_schema, load_spec, load_specs

# No ffmpeg runs here: the first pass only (README: Test).
pytestmark = pytest.mark.once

SPECS = load_specs(SHIPPED_PLATFORMS)
OUTPUT_SCHEMA = load_schema("platform-metadata")

FAMILY = "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466"   # 👨‍👩‍👧‍👦, 1 cluster
THUMB = "\U0001F44D\U0001F3FD"                    # 👍🏽
FLAG_FR = "\U0001F1EB\U0001F1F7"                  # 🇫🇷
E_ACUTE = "e\u0301"                               # é, decomposed
HEBREW = "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd"   # שלום עולם
ARABIC = "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645"


def clusters(text):
    return regex.findall(r"\X", text)


def with_rules(name="custom", **metadata):
    """A spec with these metadata rules (the video part is irrelevant here)."""
    return dataclasses.replace(SPECS["tiktok"], name=name, metadata=metadata)


def posted_text(document, spec):
    """What the platform shows: the caption, plus the title when it is a field of its own."""
    template = spec.metadata.get("caption_template", [])
    titled = any("{title}" in paragraph for paragraph in template)
    return document["caption"] if titled else document["title"] + "\n" + document["caption"]


def distinct(sigil, text):
    return {match[1].casefold() for match in INLINE_TAG[sigil].finditer(text)}


# --- cutting ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, limit, count, expected", [
    ("hello world", 8, "chars", "hello…"),                  # word boundary, ellipsis counted
    ("one, two three", 7, "chars", "one…"),                 # no dangling comma
    ("abcdefghij", 5, "chars", "abcd…"),                    # one long word: cut, not emptied
    ("short", 5, "chars", "short"),                         # at the limit: untouched
    (FLAG_FR * 3, 5, "chars", FLAG_FR * 2 + "…"),           # never half a flag
    (THUMB * 3, 5, "chars", THUMB * 2 + "…"),               # never a thumb without its skin tone
    (E_ACUTE * 5, 4, "chars", E_ACUTE + "…"),               # never an accent without its letter
    (FAMILY + " family", 3, "chars", ""),                   # the first cluster alone is too long
    (FAMILY + " family", 13, "utf16", FAMILY + "…"),        # 11 UTF-16 units + 1
    ("\U0001F600" * 3, 5, "utf16", "\U0001F600\U0001F600…"),  # emoji are 2 UTF-16 units
    ("ééééé", 6, "bytes", "é…"),                            # é is 2 bytes, … is 3
    (HEBREW + " יפה", 10, "chars", HEBREW + "…"),           # right-to-left text, same rules
    ("hi @alice_smith", 12, "chars", "hi…"),                # '@ali…' would tag someone else
    ("#summervibes", 8, "chars", ""),                       # and '#summ…' is another hashtag
    ("abc", 1, "chars", "a"),                               # no room for an ellipsis
])
def test_cut(text, limit, count, expected):
    assert cut(text, limit, count) == expected
    assert measure(cut(text, limit, count), count) <= limit


@pytest.mark.parametrize("text, count, expected", [
    ("abc", "chars", 3), ("é", "bytes", 2), ("é", "utf16", 1), ("\U0001F600", "chars", 1),
    ("\U0001F600", "utf16", 2), ("\U0001F600", "bytes", 4), (FAMILY, "chars", 7),
    (FAMILY, "utf16", 11),
])
def test_measure_counts_as_the_platform_counts(text, count, expected):
    assert measure(text, count) == expected


# --- hashtags and mentions -------------------------------------------------------------------

@pytest.mark.parametrize("hashtags, expected, warnings", [
    (["#Summer Vibes", "fun"], ["SummerVibes", "fun"], []),
    (["a b!"], ["ab"], ["hashtag 'a b!' normalised to 'ab'"]),
    (["fun", "FUN", "#Fun", "f u n"], ["fun"], ["dropped 3 duplicate hashtags: FUN, Fun, fun"]),
    (["##double#hash"], ["doublehash"], ["hashtag '##double#hash' normalised to 'doublehash'"]),
    (["", "#", "!!!", FLAG_FR, THUMB + FAMILY], [], [
        "hashtag '' dropped: nothing in it a hashtag can hold",
        "hashtag '#' dropped: nothing in it a hashtag can hold",
        "hashtag '!!!' dropped: nothing in it a hashtag can hold",
        f"hashtag {FLAG_FR!r} dropped: nothing in it a hashtag can hold",
        f"hashtag {THUMB + FAMILY!r} dropped: nothing in it a hashtag can hold"]),
    (["caf" + E_ACUTE, "café"], ["café"], ["dropped 1 duplicate hashtag: café"]),  # NFC
    (["love❤️"], ["love"], ["hashtag 'love❤️' normalised to 'love'"]),
    (["日本語", "עברית", "Straße", "STRASSE", "snake_case"],
     ["日本語", "עברית", "Straße", "snake_case"], ["dropped 1 duplicate hashtag: STRASSE"]),
])
def test_hashtag_normalisation(hashtags, expected, warnings):
    document, notes = format_metadata({"title": "t", "hashtags": hashtags}, SPECS["tiktok"])
    assert document["hashtags"] == expected
    assert notes == warnings


@pytest.mark.parametrize("mentions, expected, warnings", [
    (["@Bob", "bob", "alice.", "@jane.doe"], ["Bob", "alice", "jane.doe"],
     ["mention 'alice.' normalised to 'alice'", "dropped 1 duplicate mention: bob"]),
    (["@", "@ @"], [], ["mention '@' dropped: nothing in it a mention can hold",
                        "mention '@ @' dropped: nothing in it a mention can hold"]),
])
def test_mention_normalisation(mentions, expected, warnings):
    document, notes = format_metadata({"title": "t", "mentions": mentions}, SPECS["tiktok"])
    assert document["mentions"] == expected
    assert notes == warnings
    assert document["caption"] == "\n\n".join(["t"] + [" ".join("@" + m for m in expected)]
                                              * bool(expected))


def test_instagram_keeps_5_of_43_hashtags_and_warns():
    hashtags = [f"tag{i}" for i in range(43)]
    instagram, notes = format_metadata({"title": "t", "hashtags": hashtags}, SPECS["instagram"])
    assert instagram["hashtags"] == hashtags[:5]
    assert instagram["caption"].count("#") == 5
    assert notes == ["dropped 38 hashtags over the limit of 5: " + ", ".join(hashtags[5:])]


def test_45_hashtags_with_duplicates_and_spaces():
    hashtags = [f"# tag {i % 40}" for i in range(45)]       # 40 distinct, 5 repeated
    instagram, notes = format_metadata({"title": "t", "hashtags": hashtags}, SPECS["instagram"])
    assert instagram["hashtags"] == [f"tag{i}" for i in range(5)]   # 5 since 18 Dec 2025
    assert notes == ["dropped 5 duplicate hashtags: tag0, tag1, tag2, tag3, tag4",
                     "dropped 35 hashtags over the limit of 5: "
                     + ", ".join(f"tag{i}" for i in range(5, 40))]
    youtube, notes = format_metadata({"title": "t", "hashtags": hashtags}, SPECS["youtube"])
    assert len(youtube["hashtags"]) == 41 and youtube["hashtags"][-1] == "Shorts"
    assert notes == ["dropped 5 duplicate hashtags: tag0, tag1, tag2, tag3, tag4"]


def test_youtube_caps_hashtags_at_60_keeping_shorts():
    hashtags = [f"h{i}" for i in range(70)]
    document, notes = format_metadata({"title": "t", "hashtags": hashtags}, SPECS["youtube"])
    assert document["hashtags"] == [f"h{i}" for i in range(59)] + ["Shorts"]
    assert notes == ["dropped 11 hashtags over the limit of 60: "
                     + ", ".join(f"h{i}" for i in range(59, 70))]


@pytest.mark.parametrize("source, caption", [
    ({"title": "t"}, "#Shorts"),
    ({"title": "t", "hashtags": ["#shorts", "SHORTS"]}, "#shorts"),
    ({"title": "t", "description": "Watch #Shorts now", "hashtags": ["Shorts"]},
     "Watch #Shorts now"),
    ({"title": "My #shorts", "description": "d"}, "d"),           # in the title: posted there
])
def test_youtube_shorts_hashtag_is_present_once(source, caption):
    document, _ = format_metadata(source, SPECS["youtube"])
    assert document["caption"] == caption
    assert len(INLINE_TAG["#"].findall(posted_text(document, SPECS["youtube"]))) == 1


def test_hashtags_written_in_the_text_count_and_lose_their_sign_over_the_limit():
    description = " ".join(f"#w{i}" for i in range(10))
    document, notes = format_metadata(
        {"title": "t", "description": description, "hashtags": ["extra"]}, SPECS["instagram"])
    assert distinct("#", document["caption"]) == {f"w{i}" for i in range(5)}
    assert document["description"].endswith("#w4 w5 w6 w7 w8 w9")
    assert document["hashtags"] == []
    assert notes == ["5 hashtags written in the title or description over the limit of 5: "
                     "'#' removed from w5, w6, w7, w8, w9",
                     "dropped 1 hashtag over the limit of 5: extra"]


def test_a_hashtag_repeated_in_the_text_counts_each_time_it_is_written():
    """Instagram counts occurrences: one tag written 35 times is 35 hashtags, not 1."""
    description = " ".join(["#same"] * 35) + " #a #b #c #d #e"
    document, notes = format_metadata({"title": "t", "description": description},
                                      SPECS["instagram"])
    assert len(INLINE_TAG["#"].findall(posted_text(document, SPECS["instagram"]))) == 5
    assert document["description"].startswith("#same same same")
    assert notes == ["34 hashtags repeated in the title or description: '#' kept on the "
                     "first of each only (the limit of 5 counts each occurrence): same",
                     "1 hashtag written in the title or description over the limit of 5: "
                     "'#' removed from e"]


def test_instagram_caps_mentions_at_20():
    document, notes = format_metadata(
        {"title": "t", "description": "hi @a0 and @a1", "mentions": [f"a{i}" for i in range(25)]},
        SPECS["instagram"])
    assert document["mentions"] == [f"a{i}" for i in range(2, 20)]
    assert distinct("@", document["caption"]) == {f"a{i}" for i in range(20)}
    assert notes == ["dropped 5 mentions over the limit of 20: a20, a21, a22, a23, a24"]


def test_a_listed_tag_already_in_the_text_is_not_repeated():
    document, notes = format_metadata(
        {"title": "t", "description": "Loving this #Sunset with @Ann.", "hashtags": ["sunset"],
         "mentions": ["ann", "bo"]}, SPECS["tiktok"])
    assert document["caption"] == "t\n\nLoving this #Sunset with @Ann.\n\n@bo"
    assert notes == []


# --- titles, descriptions, captions ----------------------------------------------------------

def test_script_tags_are_removed_where_youtube_forbids_them():
    source = {"title": "<script>alert(1)</script> Hi", "description": "a < b > c"}
    youtube, notes = format_metadata(source, SPECS["youtube"])
    assert youtube["title"] == "scriptalert(1)/script Hi"
    assert youtube["description"] == "a  b  c"
    assert notes == ["title: removed 4 characters it cannot contain: '<', '>'",
                     "description: removed 2 characters it cannot contain: '<', '>'"]
    tiktok, notes = format_metadata(source, SPECS["tiktok"])
    assert tiktok["title"] == source["title"] and notes == []


@pytest.mark.parametrize("title, platform", [
    ("", "tiktok"), ("   \n\t ", "tiktok"), ("<<>>", "youtube"), ("\x00\x07", "instagram"),
    ("<\u0301>", "youtube"),                                  # the accent goes with its '<'

])
def test_an_empty_title_is_never_emitted(title, platform):
    with pytest.raises(SourceError, match="is empty once spaces, control characters"):
        format_metadata({"title": title}, SPECS[platform])


def test_a_title_whose_first_character_cannot_fit_is_an_error():
    zalgo = "Z" + "\u0336" * 150 + " title"        # one grapheme cluster of 151 code points
    with pytest.raises(SourceError, match="nothing of it fits the youtube limit"):
        format_metadata({"title": zalgo}, SPECS["youtube"])


def test_long_youtube_title_is_cut_at_a_word_with_an_ellipsis():
    title = "A very long title " * 8                 # 144 characters
    document, notes = format_metadata({"title": title}, SPECS["youtube"])
    assert document["title"] == "A very long title " * 5 + "A very…"
    assert notes == ["title: cut from 143 to 97 characters (limit 100)"]


def test_title_is_one_line_and_controls_are_removed():
    document, notes = format_metadata(
        {"title": "Line one\nline\ttwo\x07", "description": "keep\r\nlines\x00"},
        SPECS["tiktok"])
    assert document["title"] == "Line one line two"
    assert document["description"] == "keep\nlines"
    assert notes == ["title: removed 1 character it cannot contain: '\\x07'",
                     "description: removed 1 character it cannot contain: '\\x00'"]


def test_lone_surrogates_are_removed():
    document, notes = format_metadata({"title": "ok\ud83d", "description": "x\udc00y"},
                                      SPECS["youtube"])
    assert document["title"] == "ok" and document["description"] == "xy"
    assert len(notes) == 2


def test_6000_character_description_on_every_platform():
    description = (("Ünïcödé wörds and emoji " + THUMB + " ") * 223)[:6000]
    source = {"title": "Title", "description": description, "hashtags": ["a", "b"]}
    youtube, notes = format_metadata(source, SPECS["youtube"])
    assert measure(youtube["description"], "bytes") <= 5000
    assert measure(youtube["caption"], "bytes") <= 5000
    assert youtube["caption"].endswith(" " + THUMB + "…\n\n#a #b #Shorts")
    assert notes == [
        "description: cut from 8,445 to 4,999 bytes (limit 5,000)",
        "caption: description cut from 4,999 to 4,980 bytes to fit the limit of 5,000"]
    for name in ("tiktok", "instagram", "facebook"):
        document, notes = format_metadata(source, SPECS[name])
        assert measure(document["caption"], "utf16") <= 2200
        assert document["caption"].startswith("Title\n\nÜnïcödé wörds")
        assert document["caption"].endswith("…\n\n#a #b")
        assert notes == ["caption: description cut from 6,444 to 2,183 UTF-16 units to fit "
                         "the limit of 2,200"]


def test_tiktok_counts_emoji_as_two_units():
    source = {"title": "\U0001F600" * 1000, "description": "\U0001F600" * 200}
    document, notes = format_metadata(source, SPECS["tiktok"])
    units = measure(document["caption"], "utf16")
    assert units <= 2200 and measure(document["caption"], "chars") < units
    assert notes == ["caption: description cut from 400 to 197 UTF-16 units to fit the limit "
                     "of 2,200"]


def test_rtl_text_is_cut_like_any_other():
    source = {"title": ARABIC, "description": (HEBREW + " ") * 400, "hashtags": ["עברית"]}
    document, _ = format_metadata(source, SPECS["instagram"])
    assert document["caption"].startswith(ARABIC + "\n\n" + HEBREW)
    assert document["caption"].endswith(" \u05e9\u05dc\u05d5\u05dd…\n\n#עברית")  # whole word
    assert measure(document["caption"], "utf16") <= 2200


def test_a_huge_title_is_cut_in_the_caption_before_hashtags_are_dropped():
    source = {"title": "word " * 1200, "description": "d" * 100, "hashtags": ["keep", "me"]}
    document, notes = format_metadata(source, SPECS["tiktok"])
    assert document["title"] == ("word " * 1200).strip()        # TikTok has no title field
    assert document["caption"].startswith("word word") and document["caption"].endswith(
        "…\n\n#keep #me")
    assert [n.split(" cut")[0] for n in notes] == ["caption: description", "caption: title"]


def test_hashtags_are_dropped_from_the_end_when_nothing_else_can_give():
    spec = with_rules(limits={"caption": {"max": 20, "count": "chars"}},
                      caption_template=["{title}", "{hashtags}"], required_hashtags=["req"])
    document, notes = format_metadata({"title": "t", "hashtags": ["aaaa", "bbbb", "cccc"]},
                                      spec)
    assert document["caption"] == "#aaaa #bbbb #req"
    assert document["hashtags"] == ["aaaa", "bbbb", "req"]
    assert notes == [
        "caption: title cut from 1 to 0 characters to fit the limit of 20",
        "caption: dropped 1 hashtag to fit the limit of 20 characters: cccc"]


def test_a_template_that_cannot_fit_still_gives_an_accepted_caption():
    spec = with_rules(limits={"caption": {"max": 10, "count": "chars"}},
                      caption_template=["Brought to you by reelexport {hashtags}"],
                      required_hashtags=["Shorts"])
    document, notes = format_metadata({"title": "t"}, spec)
    assert document["caption"] == "Brought…"
    assert notes == ["caption: cut from 36 to 8 characters: the template and required "
                     "hashtags alone exceed the limit of 10"]


def test_placeholders_in_the_text_are_not_expanded():
    document, _ = format_metadata(
        {"title": "{description}", "description": "{hashtags}", "hashtags": ["x"]},
        SPECS["tiktok"])
    assert document["caption"] == "{description}\n\n{hashtags}\n\n#x"


def test_youtube_tags_stay_within_500_characters():
    hashtags = [f"hashtag{i:03d}" for i in range(59)]       # 10 characters each
    document, notes = format_metadata({"title": "t #intitle", "hashtags": hashtags},
                                      SPECS["youtube"])
    # the required Shorts first: it is never the tag dropped (it was, when it came last)
    assert document["tags"][:2] == ["intitle", "hashtag000"]
    assert document["tags"][-1] == "Shorts"
    assert len(",".join(document["tags"])) <= 500
    assert len(document["tags"]) == 46          # 8 + 44 x 11 + 7, less the last comma: 498
    assert notes == ["dropped 1 hashtag over the limit of 60: hashtag058",   # #intitle counts
                     "tags: dropped 14 tags over the total of 500 characters: "
                     + ", ".join(f"hashtag{i:03d}" for i in range(44, 58))]


def test_formatting_is_deterministic():
    source = {"title": "T " + THUMB, "description": HEBREW * 300,
              "hashtags": [f"t{i % 7}" for i in range(50)]}
    for spec in SPECS.values():
        assert format_metadata(source, spec) == format_metadata(dict(source), spec)


# --- the rules are data: the platform schema checks them -------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("metadata.colour", 1, "metadata: Additional properties are not allowed ('colour'"),
    ("metadata.limits.caption.count", "words",
     "metadata.limits.caption.count: 'words' is not one of"),
    ("metadata.limits.caption", None, "metadata.limits: 'caption' is a required property"),
    ("metadata.limits.title.max", 0, "metadata.limits.title.max: 0 is less than the minimum"),
    ("metadata.caption_template", ["{titel}"],
     "metadata.caption_template.0: '{titel}' does not match"),
    ("metadata.required_hashtags", ["two words"],
     "metadata.required_hashtags.0: 'two words' does not match"),
    ("metadata.caption_template", None, "metadata: 'caption_template' is a required property"),
    ("metadata.forbidden_chars", "<#>", "metadata.forbidden_chars: '<#>' does not match"),
])
def test_metadata_rules_are_validated(tmp_path, field, value, message):
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(tmp_path, "youtube", **{field: value}))
    assert message in str(caught.value)


# --- properties ------------------------------------------------------------------------------

# Pieces that break naive code: combining marks, emoji sequences, a lone regional indicator,
# a keycap, ZWJ, bidi controls, RTL and CJK text, an Indic conjunct, Hangul jamo, a control.
ATOMS = ["a", "Z", "word", " ", "  ", "\n", "\t", ".", ",", "<", ">", "#", "@", "#tag", "@who",
         "{title}", E_ACUTE, "e\u0301\u0323", THUMB, FAMILY, FLAG_FR, "\U0001F1EB",
         "1\ufe0f\u20e3", "\u200d", "\u200f", "\u202e", HEBREW, ARABIC, "日本語", "\U0001F600",
         "\x07", "…", "\u0915\u094d\u0937", "\uac00", "\u1100\u1161"]
COUNTS = ["chars", "bytes", "utf16"]
atom_text = st.lists(st.sampled_from(ATOMS), max_size=40).map("".join)
any_text = st.one_of(atom_text, st.text(max_size=60))
long_text = st.one_of(any_text, st.builds(lambda text, n: text * n, any_text, st.integers(1, 250)))
tag_list = st.lists(any_text, max_size=70)


@st.composite
def rules(draw):
    """Any rules the schema accepts (templates keep their parts apart, as real ones do)."""
    def length():
        return {"max": draw(st.integers(1, 300)), "count": draw(st.sampled_from(COUNTS))}
    metadata = {"limits": {"caption": length()},
                "caption_template": draw(st.sampled_from([
                    ["{title}", "{description}", "{hashtags} {mentions}"],
                    ["{description}", "{hashtags} {mentions}"],
                    ["{title} {hashtags}", "{description}"],
                    ["Made by us: {title}", "{mentions}", "{hashtags}", "{description}"]]))}
    for name in ("title", "description"):
        if draw(st.booleans()):
            metadata["limits"][name] = length()
    for key, value in (("max_hashtags", st.integers(0, 12)), ("max_mentions", st.integers(0, 6)),
                       ("forbidden_chars", st.sampled_from(["<>", "<>&.", "a"])),
                       ("required_hashtags", st.sampled_from([["Shorts"], ["a", "B"]])),
                       ("tags_total_max_chars", st.integers(1, 80))):
        if draw(st.booleans()):
            metadata[key] = draw(value)
    jsonschema.validate({"metadata": metadata}, {"properties": {"metadata": load_schema(
        "platform")["properties"]["metadata"]}})
    return with_rules(**metadata)


sources = st.fixed_dictionaries(
    {"title": any_text},
    optional={"description": long_text, "hashtags": tag_list, "mentions": tag_list})
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


def check_document(document, spec):
    """Every rule of `spec` holds for `document`: the properties the upload relies on."""
    jsonschema.validate(document, OUTPUT_SCHEMA)
    rules_ = spec.metadata
    for name, limit in rules_["limits"].items():
        assert measure(document[name], limit["count"]) <= limit["max"], name
    texts = [document[name] for name in ("title", "description", "caption")]
    for text in texts + document["hashtags"] + document["mentions"] + document.get("tags", []):
        assert not set(text) & set(rules_.get("forbidden_chars", "")), text
    posted = posted_text(document, spec)
    if "max_hashtags" in rules_:        # occurrences, as the platforms count
        assert len(INLINE_TAG["#"].findall(posted)) <= rules_["max_hashtags"]
    if "max_mentions" in rules_:
        assert len(INLINE_TAG["@"].findall(posted)) <= rules_["max_mentions"]
    if "tags_total_max_chars" in rules_:
        assert len(",".join(document["tags"])) <= rules_["tags_total_max_chars"]


@PROPERTY_SETTINGS
@given(source=sources, spec=rules())
def test_no_output_ever_exceeds_a_limit(source, spec):
    try:
        document, warnings = format_metadata(source, spec)
    except SourceError:
        title, _ = clean_text(source["title"], spec.metadata.get("forbidden_chars", ""), True)
        limit = spec.metadata["limits"].get("title")
        assert not title or (limit and not cut(title, limit["max"], limit["count"]))
        return
    check_document(document, spec)
    assert all(isinstance(w, str) and "\n" not in w for w in warnings)


@PROPERTY_SETTINGS
@given(source=sources, platform=st.sampled_from(sorted(SPECS)))
def test_shipped_platforms_accept_every_output(source, platform):
    spec = SPECS[platform]
    assume(clean_text(source["title"], spec.metadata.get("forbidden_chars", ""), True)[0])
    document, _ = format_metadata(source, spec)
    check_document(document, spec)
    posted = posted_text(document, spec)
    for tag in spec.metadata.get("required_hashtags", []):
        assert tag.casefold() in distinct("#", posted)


@PROPERTY_SETTINGS
@given(text=long_text, limit=st.integers(1, 400), count=st.sampled_from(COUNTS))
def test_a_cut_never_splits_a_grapheme_cluster(text, limit, count):
    result = cut(text, limit, count)
    assert measure(result, count) <= limit
    if result == text:
        return
    marked = measure(ELLIPSIS, count) < limit and result
    kept = result[:-1] if marked else result
    boundaries, offset = {0}, 0
    for cluster in clusters(text):
        offset += len(cluster)
        boundaries.add(offset)
    assert text.startswith(kept) and len(kept) in boundaries


@PROPERTY_SETTINGS
@given(source=sources, spec=rules())
def test_title_and_description_are_cut_only_at_cluster_boundaries(source, spec):
    """The same rules without length limits give the uncut text: the limited one is its cut."""
    unlimited = {"caption": {"max": 10**6, "count": "chars"}}
    unlimited_spec = with_rules(**{**spec.metadata, "limits": unlimited})
    try:
        document, _ = format_metadata(source, spec)
        uncut, _ = format_metadata(source, unlimited_spec)
    except SourceError:
        return
    for name, limit in spec.metadata["limits"].items():
        if name != "caption":
            assert document[name] == cut(uncut[name], limit["max"], limit["count"])
