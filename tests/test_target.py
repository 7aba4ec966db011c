"""``search --target-accuracy``: the budget ladder, its stopping rules, the front and the chosen network."""

import csv
import json
import time

import numpy as np
import pytest
from datagen import learnable_dataset
from PIL import Image
from test_search import TINY, cli

from defect_nas.core.search_config import TARGET_SHARES, SearchConfig
from defect_nas.nas.target import (
    LADDER,
    MIN_RUNG_S,
    choose,
    keep_descending,
    run_target,
    rungs_that_fit,
    rungs_worth_running,
)


def _point(run: str, macs: int, val: float | None, target: float, latency: float = 1.0) -> dict:
    return {"run": run, "macs": macs, "latency_onnx_ms": latency, "val_accuracy_mean": val,
            "reached": None if val is None else val >= target}


def test_the_ladder_descends_from_the_ceiling_and_keeps_only_the_budgets_whose_seeds_have_time():
    everything = rungs_that_fit(100e6, None, lambda m: True)
    assert everything == [100e6 * f for f in LADDER] and everything[0] == 100e6  # the ceiling first, nothing above
    assert rungs_that_fit(100e6, 2 * MIN_RUNG_S + 1, lambda m: True) == everything[:2]
    assert rungs_that_fit(100e6, MIN_RUNG_S / 2, lambda m: True) == [100e6]  # at least the ceiling
    assert rungs_that_fit(10e6, None, lambda m: m >= 1e6) == [10e6, 3e6, 1e6]  # a space's floor ends the ladder


def test_a_target_reached_then_missed_stops_the_descent_and_an_unbroken_reach_goes_on():
    t = 99.5
    assert keep_descending([_point("100m", 100, 99.8, t)], t)  # reached at the first budget: try cheaper
    assert keep_descending([_point("100m", 100, 99.8, t), _point("30m", 30, 99.6, t)], t)
    assert not keep_descending([_point("100m", 100, 99.8, t), _point("30m", 30, 99.0, t)], t)
    assert keep_descending([_point("100m", 100, 99.0, t), _point("30m", 30, 99.2, t)], t)  # never reached: go on


def _rung(final_s: float, val: float = 99.8):
    """A stand-in for one budget's run: its winner's 3 seeds took ``final_s`` for 40 epochs each; its
    MACs are the top of the band the rung was given (the most a fitted spec may cost)."""
    def run_one(cfg: SearchConfig, folder, begun: float) -> dict:
        (folder / "winner").mkdir(parents=True)
        (folder / "winner" / "arch.json").write_text("{}")
        winner = {"name": "trial 0", "macs": int(cfg.budget_flops * (1 + cfg.tolerance)), "params": 1000,
                  "latency_onnx_ms": 0.5,
                  "val_accuracy_mean": val, "test_accuracy_mean": val, "test_accuracies": [val] * 3,
                  "test_accuracy_std": 0.0, "seeds": 3, "epochs_run": [40, 40, 40]}
        return {"winner": winner, "timeline": {"final_s": final_s}}
    return run_one


@pytest.mark.parametrize("final_s, rungs", [(3000.0, 1), (200.0, 4)])
def test_a_target_reached_at_the_first_budget_descends_only_while_the_seeds_of_a_cheaper_one_have_time(
        tmp_path, final_s, rungs):
    """30 minutes, the ceiling reached: if its seeds trained as slowly as 120 epochs in 50 min, no
    cheaper budget's 3 seeds could get 40 epochs in what is left (even at 1.6x the pace, 30M's share of
    100M's), so the descent stops there and the
    run ends; trained fast (200 s), every budget of the ladder is tried."""
    config = SearchConfig(dataset="neu", time_budget_s=1800.0, explore_share=TARGET_SHARES[0],
                          promote_share=TARGET_SHARES[1])
    logged: list[str] = []
    result = run_target(config, tmp_path / "run", 99.5, _rung(final_s), started=time.time(),
                        feasible=lambda m: True, log=logged.append)
    assert len(result["front"]) == rungs and result["winner"]["macs"] == min(p["macs"] for p in result["front"])
    assert all(p["macs"] <= p["budget_flops"] for p in result["front"])  # each budget is a ceiling: "10M" <= 10M
    if rungs == 1:
        assert "the time left trains no cheaper budget's 3 seeds" in result["stopped"]
        assert any("dropped" in line for line in logged)
    assert (tmp_path / "run" / "winner" / "arch.json").is_file() and (tmp_path / "run" / "front.csv").is_file()


def test_the_winner_is_the_cheapest_point_that_reaches_the_target_by_the_runs_cost():
    t = 99.5
    pts = [_point("100m", 100, 99.9, t, 3.0), _point("30m", 30, 99.6, t, 1.0), _point("10m", 10, 99.4, t, 0.5)]
    best, warning = choose(pts, t, "macs")
    assert best["run"] == "30m" and warning is None
    pts[0]["latency_onnx_ms"] = 0.8  # by latency, the 100M point is the fastest of those that reach the target
    assert choose(pts, t, "latency_onnx_ms")[0]["run"] == "100m"
    best, warning = choose(pts, 99.95, "macs")
    assert best["run"] == "100m" and "no network reached the target accuracy 99.95%" in warning


@pytest.mark.parametrize("bad", ["0", "100.5", "nan"])
def test_a_bad_target_is_one_line_and_exit_2(bad, tmp_path):
    p = cli("search", "--dataset", str(tmp_path), "--trials", "1", "--target-accuracy", bad, check=False)
    assert p.returncode == 2 and "--target-accuracy" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "results").exists()


@pytest.fixture(scope="module")
def noise(tmp_path_factory):
    """Images whose labels are shuffled: nothing can reach a high target on them."""
    ds = learnable_dataset(classes=3, per_class=20, size=40)
    labels = np.random.default_rng(0).permutation(ds.labels.numpy())
    root = tmp_path_factory.mktemp("data") / "noise"
    for i, (img, label) in enumerate(zip(ds.images, labels)):
        folder = root / ds.class_names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
def test_an_unreached_target_under_a_ceiling_exports_the_most_accurate_point_with_a_warning(noise, tmp_path):
    results = tmp_path / "results"
    p = cli("search", "--dataset", str(noise), *TINY, "--trials", "2", "--target-accuracy", "99",
            "--results", str(results), "--json", "--epochs", "1", "--final-epochs", "1", "--promote-epochs", "1",
            "--top-k", "1", "--final-seeds", "1", "--baselines", "")  # no baselines: 4 rungs x prototypes
    out = json.loads(p.stdout)
    run = results / "noise-target-99"
    front = list(csv.DictReader((run / "front.csv").open()))
    budgets = [float(r["budget_flops"]) for r in front]
    assert len(front) >= 2 and budgets[0] == 2e6 and budgets == sorted(budgets, reverse=True)
    points = [r for r in front if r["macs"]]  # a rung without a converged winner is a row that says why
    assert all(r["note"] for r in front if not r["macs"]) and len(points) >= 2
    assert all(int(r["macs"]) <= float(r["budget_flops"]) <= 2e6 for r in points)  # every budget a ceiling
    assert all(r["seeds"] == "1" for r in points)  # each point is its final seeds (--final-seeds), not a proxy trial
    assert "no network reached the target accuracy 99%" in p.stderr and out["warning"] and p.returncode == 0
    best = max(float(r["val_accuracy_mean"]) for r in points)
    chosen = [r for r in front if r["chosen"] == "True"]
    assert len(chosen) == 1 and float(chosen[0]["val_accuracy_mean"]) == best
    exported = json.loads((run / "winner" / "metrics.json").read_text())
    assert exported["macs"] == int(chosen[0]["macs"]) and (run / "winner" / "model.onnx").is_file()
    config = json.loads((run / "summary.json").read_text())["config"]
    assert (config["explore_share"], config["promote_share"]) == TARGET_SHARES  # the seeds get 65% of each rung
    page = (run / "report.html").read_text()
    assert page.count("<svg") == 3 and "target 99%" in page and "WARNING" in page  # front x2, the winner's ROC
    assert "Operating point" in page


def test_a_cheaper_budgets_seeds_are_paced_faster_than_the_last_ones():
    """The 100M rung's seeds trained 135 epochs in 569 s (the reference run); 30M, 10M and 3M then share
    1,600 s: at 100M's own pace only 2 would be kept, at the pace scaled by x^0.4 (measured 30M: 1.65x) 3."""
    config = SearchConfig(dataset="neu", time_budget_s=3600.0, explore_share=TARGET_SHARES[0],
                          promote_share=TARGET_SHARES[1])
    pace = 135 / 569
    assert rungs_worth_running(1600.0, [30e6, 10e6, 3e6], config, pace) == 2
    assert rungs_worth_running(1600.0, [30e6, 10e6, 3e6], config, pace, paced=100e6) == 3
