"""Renders tree -> titles, names, selection (no ffmpeg)."""

import pytest

from exporter.errors import LibraryError
from exporter.sources import describe_library, discover, select


def make_tree(root, *keys):
    for key in keys:
        (root / key).mkdir(parents=True)
    return root


def test_discover_sorts_titles_and_skips_hidden_entries(tmp_path):
    make_tree(tmp_path, "women/18-23/b-story", "women/18-23/a-story", "men/24-30/c.story",
              ".git/x/y", "women/.cache/z")
    (tmp_path / "women" / "notes.txt").write_text("not a directory")
    titles = discover(tmp_path)
    assert [t.key for t in titles] == ["men/24-30/c.story", "women/18-23/a-story",
                                       "women/18-23/b-story"]
    assert titles[1].source == tmp_path / "women/18-23/a-story/final.mp4"


@pytest.mark.parametrize("bad", ["my story", "tab\there", "new\nline", "caf\u00e9", "x" * 129])
def test_invalid_directory_names_are_refused_with_the_path(tmp_path, bad):
    make_tree(tmp_path, f"women/18-23/{bad}")
    with pytest.raises(LibraryError) as caught:
        discover(tmp_path)
    assert "invalid directory name" in str(caught.value)
    assert str(tmp_path / "women/18-23") in str(caught.value)


def test_duplicate_title_ids_name_both_paths(tmp_path):
    make_tree(tmp_path, "women/18-23/story", "men/18-23/story")
    with pytest.raises(LibraryError) as caught:
        discover(tmp_path)
    message = str(caught.value)
    assert "duplicate title id 'story'" in message
    assert str(tmp_path / "men/18-23/story") in message
    assert str(tmp_path / "women/18-23/story") in message


def test_symlink_outside_the_renders_root_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    renders = make_tree(tmp_path / "renders", "women/18-23")
    (renders / "women/18-23/escape").symlink_to(outside)
    with pytest.raises(LibraryError, match="symlink points outside the renders root"):
        discover(renders)


def test_missing_renders_root(tmp_path):
    with pytest.raises(LibraryError, match="renders directory does not exist"):
        discover(tmp_path / "nope")


def test_select_by_segment_and_age(tmp_path):
    titles = discover(make_tree(tmp_path, "women/18-23/a", "women/24-30/b", "men/18-23/c"))
    assert [t.title_id for t in select(titles, ("women",), ())] == ["a", "b"]
    assert [t.title_id for t in select(titles, ("women", "men"), ("18-23",))] == ["c", "a"]
    assert select(titles, ("kids",), ()) == []
    assert describe_library(titles) == ("men/18-23 (1 title), women/18-23 (1 title), "
                                        "women/24-30 (1 title)")
