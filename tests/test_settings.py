from pathlib import Path

from exporter.model.settings import resolve_settings, split_list


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
