"""Renders tree -> titles, names, selection (no ffmpeg)."""

import pytest

from exporter.model.errors import LibraryError
from exporter.model.sources import describe_library, discover, select

# No ffmpeg runs here: the first pass only (README: Test).
pytestmark = pytest.mark.once


def make_tree(root, *keys):
    for key in keys:
        (root / key).mkdir(parents=True)
    return root


def test_discover_sorts_titles_and_skips_hidden_entries(tmp_path):
    make_tree(tmp_path, "women/18-23/b-story", "women/18-23/a-story", "men/24-30/c.story",
              ".git/x/y", "women/.cache/z")
    (tmp_path / "women" / "notes.txt").write_text("not a directory")
    titles = discover(tmp_path).titles
    assert [t.key for t in titles] == ["men/24-30/c.story", "women/18-23/a-story",
                                       "women/18-23/b-story"]
    assert titles[1].source == tmp_path / "women/18-23/a-story/final.mp4"


@pytest.mark.parametrize("bad", ["my story", "tab\there", "new\nline", "caf\u00e9", "x" * 129,
                                 "a..b", "-\x1b[31m"])
def test_invalid_directory_names_are_refused_alone(tmp_path, bad):
    make_tree(tmp_path, f"women/18-23/{bad}", "women/18-23/fine")
    library = discover(tmp_path)
    assert [t.title_id for t in library.titles] == ["fine"]
    [problem] = library.problems
    assert problem == (f"{tmp_path / 'women/18-23'}/{bad!r}: invalid directory name: use "
                       "letters, digits, '-', '_', '.' (no leading dot, no '..', at most 128 "
                       "characters)")


def test_a_bad_segment_refuses_everything_below_it(tmp_path):
    make_tree(tmp_path, "bad segment/18-23/a", "women/18-23/b")
    library = discover(tmp_path)
    assert [t.title_id for t in library.titles] == ["b"]
    assert len(library.problems) == 1 and "'bad segment'" in library.problems[0]


def test_duplicate_title_ids_name_both_paths_and_export_neither(tmp_path):
    make_tree(tmp_path, "women/18-23/story", "men/18-23/story", "men/18-23/other")
    library = discover(tmp_path)
    assert [t.title_id for t in library.titles] == ["other"]
    [message] = library.problems
    assert message.startswith("duplicate title id 'story': ")
    assert str(tmp_path / "men/18-23/story") in message
    assert str(tmp_path / "women/18-23/story") in message


def test_symlink_outside_the_renders_root_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    renders = make_tree(tmp_path / "renders", "women/18-23/inside")
    (renders / "women/18-23/escape").symlink_to(outside)
    (renders / "women/18-23/alias").symlink_to(renders / "women/18-23/inside")
    library = discover(renders)
    assert [t.title_id for t in library.titles] == ["alias", "inside"]
    assert library.problems == [f"{renders / 'women/18-23/escape'}: symlink points outside "
                                f"the renders root (to {outside})"]


def test_missing_renders_root(tmp_path):
    with pytest.raises(LibraryError, match="renders directory does not exist"):
        discover(tmp_path / "nope")


def test_select_by_segment_and_age(tmp_path):
    titles = discover(make_tree(tmp_path, "women/18-23/a", "women/24-30/b", "men/18-23/c")).titles
    assert [t.title_id for t in select(titles, ("women",), ())] == ["a", "b"]
    assert [t.title_id for t in select(titles, ("women", "men"), ("18-23",))] == ["c", "a"]
    assert select(titles, ("kids",), ()) == []
    assert describe_library(titles) == ("men/18-23 (1 title), women/18-23 (1 title), "
                                        "women/24-30 (1 title)")
