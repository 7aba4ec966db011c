"""The latency-aware objectives: what they reward, and that the engine maximises the one asked for."""

from __future__ import annotations

import math

import optuna
import pytest
from test_strategies import run_study, stub_trainer  # noqa: F401  (the stubbed trainer fixture)

from defect_nas.core.errors import DefectNasError
from defect_nas.core.netscore import netscore
from defect_nas.core.search_config import SearchConfig
from defect_nas.core.utility import OBJECTIVES, utility
from defect_nas.nas.phases import choose_winner
from defect_nas.nas.strategies import metric_names


def test_netscore_latency_trades_latency_as_netscore_trades_macs():
    base = utility("netscore-latency", 99.0, 200_000, 100e6, latency_ms=2.0)
    assert utility("netscore-latency", 99.0, 200_000, 100e6, latency_ms=1.0) == pytest.approx(base + 10 * math.log10(2))
    assert utility("netscore-latency", 99.0, 100_000, 100e6, latency_ms=2.0) == pytest.approx(base + 10 * math.log10(2))
    assert utility("netscore-latency", 99.0, 200_000, 50e6, latency_ms=2.0) == base  # MACs play no part
    assert utility("netscore", 99.0, 200_000, 100e6) == netscore(99.0, 200_000, 100e6)  # the default is unchanged


def test_mnas_is_accuracy_at_the_target_and_penalises_slowness_softly():
    assert utility("mnas", 99.0, 1, 1, latency_ms=1.0, target_ms=1.0) == pytest.approx(99.0)
    slow = utility("mnas", 99.0, 1, 1, latency_ms=2.0, target_ms=1.0)
    assert slow == pytest.approx(99.0 * 2**-0.07) and 94 < slow < 95  # 2x slower costs ~4.7% of accuracy
    assert utility("mnas", 99.0, 1, 1, latency_ms=0.5, target_ms=1.0) > 99.0  # faster than the target pays


def test_a_latency_objective_without_a_latency_or_target_is_one_clear_error():
    with pytest.raises(DefectNasError, match="latency"):
        utility("netscore-latency", 99.0, 1, 1, latency_ms=None)
    with pytest.raises(DefectNasError, match="--latency-target-ms"):
        SearchConfig(objective="mnas")
    with pytest.raises(DefectNasError, match="--objective"):
        SearchConfig(objective="speed")
    assert OBJECTIVES.get("netscore-latency").needs_latency and not OBJECTIVES.get("netscore").needs_latency


def test_the_winner_rule_ranks_by_the_objective_within_the_accuracy_margin():
    promoted = [{"trial": 1, "val_accuracy": 99.6, "val_netscore": 99.0, "val_utility": 80.0},
                {"trial": 2, "val_accuracy": 99.2, "val_netscore": 95.0, "val_utility": 90.0},
                {"trial": 3, "val_accuracy": 97.0, "val_netscore": 99.5, "val_utility": 99.0}]
    assert choose_winner(promoted, margin=1.0)["trial"] == 2  # the fastest within 1 point, not the best NetScore


def test_the_engine_maximises_the_latency_objective_from_each_trials_onnx_latency(tmp_path, stub_trainer):  # noqa: F811
    study = run_study(tmp_path, f"sqlite:///{tmp_path / 'study.db'}", 4, objective="netscore-latency",
                      strategy="random", pruner="none")
    assert metric_names(SearchConfig(objective="netscore-latency")) == ["val_netscore_latency"]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("latency_ms")]
    assert len(done) >= 3
    for t in done:
        a = t.user_attrs
        assert t.value == pytest.approx(utility("netscore-latency", a["val_accuracy"], a["params"], a["macs"],
                                                a["latency_ms"]))
        assert a["netscore"] == pytest.approx(netscore(a["val_accuracy"], a["params"], a["macs"]))


def test_each_timed_design_reports_its_achieved_gflops_against_the_measured_peak():
    from defect_nas.nas.latency import PEAK, with_latency

    rows = [{"spec_digest": "abc", "macs": 100e6}, {"spec_digest": "def", "macs": 100e6}]
    cache = {"abc": {"latency_ms": 1.0, "cv": 0.01}, PEAK: {"gflops": 400.0, "threads": 1}}
    timed, untimed = with_latency(rows, cache)
    assert timed["gflops"] == 200.0 and timed["fraction_of_peak"] == 0.5  # 2 x 100M MACs in 1 ms
    assert untimed["gflops"] is None and untimed["fraction_of_peak"] is None


def test_the_peak_is_a_real_measurement_of_this_machine():
    from defect_nas.measure.peak import peak_gflops

    assert 1.0 < peak_gflops("fp32", threads=1, min_run_time=0.2) < 10_000  # GFLOP/s of a 1024^3 GEMM


def test_the_live_table_ranks_and_labels_trials_by_the_searchs_objective():
    """Under --objective mnas the live view's "best" must be the objective's best, named as such, not
    NetScore's (a user watching a latency search saw NetScore and a different best trial)."""
    from rich.console import Console

    from defect_nas.cli.progress import progress_table

    study = optuna.create_study(direction="maximize")
    for number, (netscore_value, mnas_value) in enumerate([(80.0, 90.0), (85.0, 95.0), (90.0, 92.0)]):
        study.add_trial(optuna.trial.create_trial(
            value=mnas_value, state=optuna.trial.TrialState.COMPLETE,
            user_attrs={"val_accuracy": 97.0, "macs": 100e6, "params": 100_000 + number, "digest": f"d{number}",
                        "netscore": netscore_value, "utility": mnas_value}))
    console = Console(width=200, record=True)
    console.print(progress_table(study, {"started": 0.0, "objective": "mnas"}))
    text = console.export_text()
    assert "best: #1 " in text and "mnas 95.00" in text  # NetScore's best would be #2
    assert "NetScore" not in text
