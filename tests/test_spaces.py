"""Search spaces: registered by name, driven by optuna trials or a seeded RandomTrial."""

import optuna
import pytest

from defect_nas.core.budget import Budget, fit
from defect_nas.core.cost import macs
from defect_nas.core.errors import DefectNasError
from defect_nas.search_spaces.base import RandomTrial, Task, all_spaces, get_space

SPACES = sorted(all_spaces())


def test_the_three_spaces_and_their_prototypes_are_registered():
    assert SPACES == ["lw", "residual", "vgg-student"]
    names = {s: set(all_spaces()[s].prototypes(Task())) for s in SPACES}
    assert names == {
        "lw": {"lw@0.35", "lw@0.75"},
        "residual": {"resnet-proto"},
        "vgg-student": {"vgg-student/16", "vgg-student-4-8-16-4-4"},
    }


def test_unknown_space_names_the_choices():
    with pytest.raises(DefectNasError, match="choose --space lw, residual, vgg-student"):
        get_space("mobilenet")


@pytest.mark.parametrize("space", SPACES)
def test_same_seed_same_spec_different_seed_differs(space):
    s = get_space(space)
    assert s.propose(RandomTrial(7), Task()) == s.propose(RandomTrial(7), Task())
    assert len({s.propose(RandomTrial(i), Task()).digest() for i in range(20)}) > 10


@pytest.mark.parametrize("space", SPACES)
def test_propose_runs_under_an_optuna_sampler(space):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3))
    s = get_space(space)

    def objective(trial):
        return macs(fit(s.propose(trial, Task()), Budget(100e6)))

    study.optimize(objective, n_trials=6)
    assert len(study.trials) == 6 and all(t.params for t in study.trials)
    assert all(95e6 <= t.value <= 105e6 for t in study.trials)
    # a trial's parameters replay to the same architecture (how a study's winner is rebuilt)
    t = study.best_trial
    replay = s.propose(optuna.trial.FixedTrial(t.params), Task())
    assert macs(fit(replay, Budget(100e6))) == t.value


@pytest.mark.parametrize("space", SPACES)
def test_small_inputs_never_shrink_the_map_to_nothing(space):
    for seed in range(100):
        get_space(space).propose(RandomTrial(seed), Task(1, 32, 2))  # validates on construction
