"""The one Registry behind every command-line choice: order, lazy built-ins, one-line errors."""

import pytest

from defect_nas.core.errors import DefectNasError
from defect_nas.core.registry import Registry
from defect_nas.core.utility import OBJECTIVES
from defect_nas.data import DATASETS
from defect_nas.evaluators.teacher import TEACHERS, teacher_choices
from defect_nas.nas.baselines import BASELINES, baseline_choices
from defect_nas.nas.strategies import PRUNERS, STRATEGIES
from defect_nas.search_spaces.base import SPACES


def test_built_ins_load_once_lazily_and_keep_their_order():
    loads = []
    reg: Registry[int] = Registry("widget", "--widget", loader=lambda: loads.append(1) or reg.add("b", 2))
    reg.add("a", 1)
    assert loads == []  # nothing imported until a name is asked for
    assert reg.names() == ("a", "b") and reg.get("b") == 2 and "a" in reg
    assert loads == [1]


def test_a_name_registered_twice_is_a_programming_error():
    reg: Registry[int] = Registry("widget", "--widget")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", 2)


@pytest.mark.parametrize("registry", [SPACES, STRATEGIES, PRUNERS, TEACHERS, BASELINES, DATASETS, OBJECTIVES],
                         ids=lambda r: r.axis)
def test_every_axis_names_its_choices_and_the_flag_in_one_line(registry):
    assert registry.names()
    with pytest.raises(DefectNasError) as err:
        registry.get("no-such-thing")
    msg = str(err.value)
    assert "\n" not in msg and registry.flag in msg and all(n in msg for n in registry.names())


def test_the_cli_offers_exactly_the_registered_choices():
    from defect_nas.cli.main import build_parser

    search = build_parser()._subparsers._group_actions[0].choices["search"]
    choices = {a.dest: tuple(a.choices) for a in search._actions if a.choices}
    assert choices["strategy"] == STRATEGIES.names() and choices["pruner"] == PRUNERS.names()
    assert choices["objective"] == OBJECTIVES.names()
    assert choices["teacher"] == teacher_choices() == (*TEACHERS.names(), "none")
    help_text = search.format_help()
    assert all(b in help_text for b in baseline_choices())
