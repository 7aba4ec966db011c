"""Resuming a search compares the stored config with the command's, all differences at once."""

from defect_nas.core.search_config import SearchConfig


def test_resume_differences_list_every_changed_setting_and_ignore_the_stopping_rule():
    stored = SearchConfig(strategy="tpe", epochs=12, trials=10).to_dict()
    mine = SearchConfig(strategy="random", epochs=6, trials=50, time_budget_s=600.0)
    assert mine.differences(stored) == {"strategy": "tpe", "epochs": 12}
    text = mine.describe_differences(stored)
    assert text == "--strategy 'random' (stored: 'tpe'), --epochs 6 (stored: 12)"


def test_an_older_config_file_resumes_with_defaults_for_keys_it_lacks():
    stored = SearchConfig().to_dict()
    for key in ("teacher_weights", "teacher_freeze", "promote_share"):  # keys added after it was written
        stored.pop(key)
    stored["search_share"] = 0.5  # a retired key
    stored.update(storage="sqlite:////elsewhere/study.db", study="neu-100m")  # where it lived
    assert SearchConfig().differences(stored) == {}
    with_teacher = SearchConfig(teacher_freeze=2, teacher="vgg16").differences(stored)
    assert with_teacher == {"teacher": "none", "teacher_freeze": 0, "kd": "none"}  # no teacher had meant no KD


def test_where_a_run_ran_does_not_block_its_resume():
    cfg = SearchConfig(trials=5)
    stored = {**cfg.to_dict(), "storage": "sqlite:///x.db", "study": "neu-100m", "device": "cuda"}
    assert cfg.differences(stored) == {}  # resuming on another device, or another storage path, is allowed


def test_every_search_flag_left_out_gives_the_search_config_default():
    """A default lives once: the search command with no flags but a stopping rule builds exactly
    SearchConfig()'s defaults (a flag whose default drifted from its field fails here)."""
    from dataclasses import fields

    from defect_nas.cli.main import build_parser
    from defect_nas.cli.search import config_from
    from defect_nas.core.search_config import SearchConfig

    parser = build_parser()
    args = parser.parse_args(["search", "--trials", "1"])
    got, want = config_from(args), SearchConfig()
    differ = {f.name: (getattr(got, f.name), getattr(want, f.name)) for f in fields(SearchConfig)
              if f.name != "trials" and getattr(got, f.name) != getattr(want, f.name)}
    assert differ == {}, differ


def test_a_run_stored_with_a_proxy_size_resumes_under_the_data_chosen_default():
    """README's command over the committed reference run (stored with --proxy-input-size 100, from
    before the size was chosen from the data) resumes it; a size typed on purpose still differs."""
    import json
    from pathlib import Path

    stored = json.loads((Path(__file__).parents[1] / "results" / "neu-100m" / "config.json").read_text())
    assert stored["proxy_input_size"] == 100
    assert SearchConfig().differences(stored) == {"proxy_input_size": 100}  # what refused it
    assert SearchConfig().resuming(stored).differences(stored) == {}
    assert SearchConfig(proxy_input_size=64).resuming(stored).differences(stored) == {"proxy_input_size": 100}
