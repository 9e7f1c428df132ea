from pathlib import Path

import pytest

from exporter.model.errors import LibraryError
from exporter.model.settings import resolve_settings, split_list

# No ffmpeg runs here: the first pass only (README: Test).
pytestmark = pytest.mark.once


def getter(values):
    return lambda name, default=None: values.get(name, default)


def test_vars_beat_environment_beat_defaults():
    env = {"REELEXPORT_RENDERS": "/env/renders", "REELEXPORT_EXPORTS": "/env/exports",
           "REELEXPORT_X264_PRESET": "veryfast"}
    settings = resolve_settings(getter({"renders": "mine", "platforms": "youtube, tiktok",
                                        "segment": "women"}), env)
    assert settings.renders == Path("mine")
    assert settings.exports == Path("/env/exports")
    assert settings.dep_file == Path("/env/exports/.doit.db")
    assert settings.platforms == ("youtube", "tiktok")
    assert settings.segments == ("women",) and settings.ages == ()
    assert settings.preset == "veryfast"
    defaults = resolve_settings(getter({}), {})
    assert (defaults.renders, defaults.exports) == (Path("data/renders"), Path("data/exports"))
    assert defaults.preset is None
    assert (defaults.attempts, defaults.backoff_s, defaults.retry_failed) == (3, 2.0, False)
    retrying = resolve_settings(getter({"retry": "failed", "attempts": "5"}),
                                {"REELEXPORT_BACKOFF_S": "0.5"})
    assert (retrying.attempts, retrying.backoff_s, retrying.retry_failed) == (5, 0.5, True)


def test_split_list():
    assert split_list(None) == () and split_list(" , ") == ()
    assert split_list("a,b ,, c") == ("a", "b", "c")


@pytest.mark.parametrize("renders, exports, says", [
    ("data/renders", "data/renders", "renders=data/renders is exports=data/renders"),
    ("data/renders", "data/renders/out", "overlaps"),
    ("data", "data/renders", "overlaps"),
    ("s3://media/renders", "s3://media/renders/", "is exports="),
    ("s3://media/renders", "s3://media/renders/exports", "overlaps"),
    ("s3://media", "s3://media/exports", "overlaps"),
])
def test_renders_and_exports_that_meet_are_refused_in_one_line(renders, exports, says):
    with pytest.raises(LibraryError) as caught:
        resolve_settings(getter({"renders": renders, "exports": exports}), {})
    assert says in str(caught.value)
    assert str(caught.value).endswith("the renders and the exports must be apart, neither "
                                      "inside the other")


@pytest.mark.parametrize("renders, exports", [
    ("data/renders", "data/exports"), ("data/renders", "data/renders-out"),
    ("s3://media/renders", "s3://media/exports"), ("s3://media/renders", "s3://other/renders"),
    ("s3://media/renders", "data/exports")])
def test_renders_and_exports_apart_are_taken(renders, exports):
    resolve_settings(getter({"renders": renders, "exports": exports}), {})


def test_an_in_process_cluster_address_is_refused_at_once():
    with pytest.raises(LibraryError, match="cluster=inproc://x: inproc:// is a scheduler "
                                           "inside one process"):
        resolve_settings(getter({"cluster": "inproc://x"}), {})


@pytest.mark.parametrize("name, value, says", [
    ("attempts", "0", "attempts=0: not a whole number of tries (attempts=3: 1 or more)"),
    ("attempts", "-2", "attempts=-2: not a whole number of tries"),
    ("attempts", "x", "attempts=x: not a whole number of tries"),
    ("backoff", "-1", "backoff=-1: not a number of seconds, 0 or more"),
    ("backoff", "inf", "backoff=inf: not a number of seconds"),
])
def test_a_bad_retry_value_is_refused_never_clamped(name, value, says):
    from exporter.model.settings import SettingsError
    with pytest.raises(SettingsError) as refused:
        resolve_settings(getter({name: value}))
    assert str(refused.value).startswith(says), str(refused.value)


def test_doit_help_lists_every_variable_and_the_options_this_project_sets():
    from conftest import run_doit

    from exporter.model.variables import OTHER_VAR_NAMES, VAR_NAMES
    text = run_doit("help", check=0).stdout
    for name in (*VAR_NAMES, *OTHER_VAR_NAMES):
        assert f"\n  {name}=" in text, name
    assert "  attempts=3 " in text and "REELEXPORT_ATTEMPTS" in text
    assert "--backend                sqlite3-lean" in text
    run = run_doit("help", "run", check=0).stdout
    assert "--db-file                EXPORTS/.doit.db" in run and "\n  renders=" in run
