"""Every registered strategy and pruner drives a real optuna study on every storage mode.

The trainer is stubbed (a deterministic accuracy per architecture, reported epoch by epoch), so
these run in seconds and exercise what the engine owns: proposals from one or several spaces
(``PrefixedTrial``), budget fitting, constraints, pruning, multi-objective studies and storage.
"""

from __future__ import annotations

import os
import uuid

import optuna
import pytest
from datagen import learnable_dataset

from defect_nas.core.cost import cost
from defect_nas.core.errors import DefectNasError
from defect_nas.core.search_config import SearchConfig
from defect_nas.core.spec import ArchSpec
from defect_nas.data import make_split
from defect_nas.nas import context, trial, workers
from defect_nas.nas.rows import trial_rows
from defect_nas.nas.storage import open_storage
from defect_nas.nas.strategies import PRUNERS, STRATEGIES
from defect_nas.search_spaces.build import build

BUDGET = 2e6  # MACs at 32x32: every space can meet it
SPACE_SETS = {"one space": ("residual",), "several spaces": ("residual", "lw")}


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path) -> str:
    """One fixture for every storage mode: SQLite always, PostgreSQL when a server is given."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    url = os.environ.get("DEFECT_NAS_TEST_POSTGRES")
    if not url:
        pytest.skip("set DEFECT_NAS_TEST_POSTGRES=postgresql://... to test the shared storage")
    return url


def stub_accuracy(spec: ArchSpec) -> float:
    """A fixed 'converged' accuracy per architecture, 40-99%."""
    return 40.0 + int(spec.digest()[:8], 16) % 60


@pytest.fixture
def stub_trainer(monkeypatch):
    calls = []

    def train_candidate(ctx, spec, epochs, input_size, seed, on_epoch=None, **overrides):
        calls.append(spec)
        final = stub_accuracy(spec)
        for epoch in range(1, epochs + 1):  # a learning curve that rises to `final`
            if on_epoch is not None:
                on_epoch(epoch, final * epoch / epochs, {})
        summary = {"val_accuracy": final, "test_accuracy": final, "epochs_run": epochs, "train_seconds": 0.0,
                   "input_size": input_size or spec.input_size}
        return build(spec), summary

    monkeypatch.setattr(trial, "train_candidate", train_candidate)
    return calls


def run_study(tmp_path, url: str, n_trials: int, **config) -> optuna.Study:
    cfg = SearchConfig(dataset="stripes", budget_flops=BUDGET, trials=n_trials, epochs=6, min_epochs=1,
                       min_accuracy=0.0, **config)
    context.check_choices(cfg)
    dataset = learnable_dataset(classes=3, per_class=12, size=32)
    ctx = context.SearchContext(cfg, dataset, make_split(dataset, seed=0), None, tmp_path)
    name = f"t-{uuid.uuid4().hex[:12]}"  # a fresh study, also on a shared PostgreSQL server
    study = workers.create_or_load_study(cfg, open_storage(url), name)
    workers.enqueue_prototypes(study, cfg, ctx.task)
    workers.run_worker(ctx, study, n_trials, deadline=None)
    return study


@pytest.mark.parametrize("spaces", list(SPACE_SETS), ids=list(SPACE_SETS))
@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_every_strategy_searches_one_or_several_spaces(strategy, spaces, storage_url, stub_trainer, tmp_path):
    study = run_study(tmp_path, storage_url, 6, strategy=strategy, spaces=SPACE_SETS[spaces], pruner="none")
    rows = trial_rows(study)
    done = [r for r in rows if r["state"] == "COMPLETE"]
    assert len(rows) == 6 and len(done) == 6
    # every trained candidate met the budget and was scored from the stubbed accuracy
    for r in done:
        assert abs(r["macs"] - BUDGET) <= 0.05 * BUDGET
        spec = ArchSpec.from_json(study.trials[r["number"]].user_attrs["spec"])
        assert cost(spec).macs == r["macs"] and r["val_accuracy"] == stub_accuracy(spec)
    assert {r["space"] for r in rows} == set(SPACE_SETS[spaces])  # the prototypes of each space come first
    drawn = [t for t in study.trials if "prototype" not in t.user_attrs]
    assert drawn, "the sampler proposed nothing beyond the prototypes"
    if len(SPACE_SETS[spaces]) > 1:  # several spaces: the space is a choice and parameters are prefixed
        for t in drawn:
            assert t.params["space"] in SPACE_SETS[spaces]
            assert all(k == "space" or k.startswith(t.params["space"] + ".") for k in t.params)
    if STRATEGIES.get(strategy).multi_objective:
        assert len(study.directions) == 3 and study.best_trials
        assert study.metric_names == ["val_accuracy_pct", "macs", "params"]  # as optuna-dashboard labels them
    else:
        best = max(done, key=lambda r: r["netscore"])
        assert study.best_trial.number == best["number"]
        assert study.metric_names == ["val_netscore_db"]


@pytest.mark.parametrize("pruner", PRUNERS.names())
def test_every_pruner_stops_weak_candidates_or_none(pruner, stub_trainer, tmp_path):
    study = run_study(tmp_path, f"sqlite:///{tmp_path / 'study.db'}", 12, strategy="tpe", pruner=pruner)
    states = [t.state for t in study.trials]
    assert len(states) == 12 and optuna.trial.TrialState.FAIL not in states
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    if pruner == "none":
        assert not pruned
    else:  # pruned before their last epoch, and weaker there than the best finished trial
        assert pruned
        best = max(t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
        assert all(max(t.intermediate_values) < 6 for t in pruned)
        assert all(t.user_attrs["val_accuracy"] < best for t in pruned)


def test_nsga2_never_prunes_whatever_pruner_is_asked_for(stub_trainer, tmp_path):
    study = run_study(tmp_path, f"sqlite:///{tmp_path / 'study.db'}", 6, strategy="nsga2", pruner="hyperband")
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


@pytest.mark.parametrize("field,value,flag", [("strategy", "bayes", "--strategy"), ("pruner", "asha", "--pruner"),
                                               ("teacher", "resnet", "--teacher"),
                                               ("baselines", ("vgg19",), "--baselines")])
def test_an_unknown_choice_is_one_line_naming_the_registered_ones(field, value, flag):
    with pytest.raises(DefectNasError) as err:
        context.check_choices(SearchConfig(**{field: value}))
    msg = str(err.value)
    assert "\n" not in msg and repr(value if isinstance(value, str) else value[0]) in msg and flag in msg



def test_an_architecture_already_trained_is_reused_not_retrained(tmp_path, stub_trainer):
    cfg = SearchConfig(dataset="stripes", budget_flops=BUDGET, trials=3, epochs=6, min_epochs=1, min_accuracy=0.0)
    dataset = learnable_dataset(classes=3, per_class=12, size=32)
    ctx = context.SearchContext(cfg, dataset, make_split(dataset, seed=0), None, tmp_path)
    study = workers.create_or_load_study(cfg, open_storage(f"sqlite:///{tmp_path / 'study.db'}"), "dup")
    for _ in range(3):  # the same prototype three times: one fitted architecture
        study.enqueue_trial({}, user_attrs={"prototype": "residual/resnet-proto"})
    workers.run_worker(ctx, study, 3, deadline=None)
    assert len(stub_trainer) == 1  # trained once
    rows = trial_rows(study)
    assert [r["reused_from"] for r in rows] == [None, 0, 0]
    assert len({r["val_accuracy"] for r in rows}) == 1 and len({t.value for t in study.trials}) == 1
