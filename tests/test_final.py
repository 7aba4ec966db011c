"""The run's final phase: a time plan that covers the whole budget, schedules sized to the time a
training has, accuracy-first promotion, the winner's choice, and a short budget kept end to end."""

import json
import time
from pathlib import Path

import pytest
import torch
from datagen import learnable_dataset

from defect_nas.core.search_config import SearchConfig
from defect_nas.core.spec import ArchSpec, Basic, Conv, Head
from defect_nas.data import make_split
from defect_nas.evaluators.trainer import TrainConfig, TrainData, train
from defect_nas.nas.phases import choose_winner, promotion_candidates
from defect_nas.nas.plan import TimePlan, reserve_seconds
from defect_nas.search_spaces.build import build

ROOT = Path(__file__).resolve().parents[1]
SPEC = ArchSpec(1, 40, 3, (Conv(8, 3, 2),), ((Basic(16, 3, 2),),), Head())


def test_time_plan_splits_what_set_up_left_and_keeps_a_reserve():
    cfg = SearchConfig(time_budget_s=3600, explore_share=0.4, promote_share=0.15)
    plan = TimePlan.make(cfg, started=1000.0, now=1100.0, baselines=False)  # set-up took 100 s
    usable = 3600 - 100 - reserve_seconds(3600)
    assert plan.end == 4600.0 and plan.final_end == 4600.0 - reserve_seconds(3600)
    assert plan.explore_end == pytest.approx(1100 + 0.4 * usable)
    assert plan.promote_end == pytest.approx(plan.explore_end + 0.15 * usable)
    with_baselines = TimePlan.make(cfg, 1000.0, 1100.0, baselines=True)
    assert plan.promote_end < with_baselines.final_end < plan.final_end  # baselines get time after the winner's
    assert TimePlan.make(SearchConfig(trials=5), 0.0, 1.0, False).final_end is None


def test_a_time_budget_sizes_the_schedule_and_stops_training_in_time():
    ds = learnable_dataset(classes=3, per_class=150, size=40)
    split = make_split(ds, seed=0)
    td = TrainData(ds.images[split.train], ds.labels[split.train], ds.images[split.val], ds.labels[split.val],
                   ds.class_names)
    start = time.perf_counter()
    r = train(build(SPEC), td, TrainConfig(epochs=100_000, batch_size=16, time_budget_s=4.0))
    took = time.perf_counter() - start
    epoch_s = r.history[-1]["seconds"] / len(r.history)
    assert took <= 4.0 + 2 * epoch_s + 0.3  # not one epoch more than the budget allows
    assert 3 <= r.planned_epochs < 100_000 and r.stop_reason in ("time", "epochs")
    # the plan was what it could do, and it did it: the trainer re-plans only when it runs more than
    # 5% (at least one epoch) behind, so a run on a busy machine may end that much short, never more
    assert len(r.history) >= r.planned_epochs - max(1.0, 0.05 * r.planned_epochs) - 1
    peak = max(h["lr"] for h in r.history)
    assert r.history[-1]["lr"] < 0.2 * peak  # the cosine was sized to the time: it annealed


def test_training_stops_on_a_validation_plateau():
    ds = learnable_dataset(classes=3, per_class=60, size=40)
    split = make_split(ds, seed=0)
    td = TrainData(ds.images[split.train], ds.labels[split.train], ds.images[split.val], ds.labels[split.val],
                   ds.class_names)
    r = train(build(SPEC), td, TrainConfig(epochs=60, batch_size=16, lr=1e-9, patience=5))  # it cannot learn
    assert r.stop_reason == "plateau" and len(r.history) < 60
    # counted in the schedule's second half only, then a 6-epoch anneal (10% of 60) instead of a stop
    # at a still-high learning rate
    assert 30 + 5 + 6 <= len(r.history) < 60
    assert r.history[-1]["lr"] < 0.05 * r.history[34]["lr"]  # annealed to ~0 after the plateau


def test_a_validation_set_at_100_percent_is_no_plateau_and_the_schedule_runs_to_its_end():
    """Saturated validation cannot tell a converged net from a half-annealed one: the full schedule runs
    (a plateau stop there cost a NEU seed 0.8 points of test accuracy)."""
    ds = learnable_dataset(classes=3, per_class=60, size=40)
    split = make_split(ds, seed=0)
    td = TrainData(ds.images[split.train], ds.labels[split.train], ds.images[split.val], ds.labels[split.val],
                   ds.class_names)
    torch.manual_seed(0)
    r = train(build(SPEC), td, TrainConfig(epochs=40, batch_size=16, patience=2, seed=0))
    assert max(h["val_accuracy"] for h in r.history[:20]) == 100.0  # saturated before the plateau could count
    # (before the rule this run stopped on a "plateau" of its validation loss at epoch 35)
    assert r.stop_reason == "epochs" and len(r.history) == 40 and r.val_accuracy == 100.0


def _row(n, val, params, digest=None, state="COMPLETE", feasible=True):
    return {"number": n, "state": state, "feasible": feasible, "val_accuracy": val, "netscore": 100 - params / 1e4,
            "spec_digest": digest or f"d{n}", "params": params, "macs": 1e8}


def test_promotion_is_accuracy_first_one_per_architecture_and_respects_the_floor():
    rows = [_row(0, 97.0, 40_000), _row(1, 99.0, 600_000), _row(2, 99.0, 100_000), _row(3, 99.0, 90_000, "d2"),
            _row(4, 99.5, 50_000, state="PRUNED"), _row(5, 99.9, 50_000, feasible=False), _row(6, 90.0, 1_000)]
    got = [r["number"] for r in promotion_candidates(rows, 3, min_accuracy=95)]
    assert got == [3, 1, 0]  # 99% first (ties to NetScore); trial 3 stands for trial 2's architecture
    assert [r["number"] for r in promotion_candidates(rows, 5, min_accuracy=99.5)] == [3, 1, 0, 6]  # no one: all



def test_with_a_target_the_budgets_prototype_enters_rung_2_second_whatever_its_proxy_score():
    rows = [_row(0, 91.0, 40_000, "proto"), _row(1, 94.0, 600_000), _row(2, 93.0, 100_000), _row(3, 92.0, 90_000)]
    rows[0]["prototype"] = "resnet-proto"
    assert [r["number"] for r in promotion_candidates(rows, 2, 95)] == [1, 2]  # a plain search: proxy accuracy
    assert [r["number"] for r in promotion_candidates(rows, 2, 95, with_prototype=True)] == [1, 0]
    assert [r["number"] for r in promotion_candidates(rows, 3, 95, with_prototype=True)] == [1, 0, 2]


def test_winner_is_the_best_netscore_within_the_accuracy_margin():
    promoted = [{"trial": 1, "val_accuracy": 100.0, "val_netscore": 90.0},
                {"trial": 2, "val_accuracy": 99.2, "val_netscore": 95.0},
                {"trial": 3, "val_accuracy": 98.5, "val_netscore": 99.0}]
    assert choose_winner(promoted, margin=1.0)["trial"] == 2
    assert choose_winner(promoted, margin=0.0)["trial"] == 1
    assert choose_winner(promoted, margin=2.0)["trial"] == 3
    assert choose_winner(promoted, margin=2.0, min_accuracy=99.0)["trial"] == 2  # the floor holds when it can
    assert choose_winner(promoted, margin=2.0, min_accuracy=100.5)["trial"] == 3  # and never empties the choice


def test_with_a_target_the_winner_in_a_band_is_the_fastest_within_the_margin_untimed_last():
    promoted = [{"trial": 1, "val_accuracy": 100.0, "val_netscore": 90.0, "latency_ms": 0.9},
                {"trial": 2, "val_accuracy": 99.2, "val_netscore": 95.0, "latency_ms": 0.4},
                {"trial": 3, "val_accuracy": 98.5, "val_netscore": 99.0, "latency_ms": 0.2},
                {"trial": 4, "val_accuracy": 99.9, "val_netscore": 99.5, "latency_ms": None}]
    assert choose_winner(promoted, margin=1.0, fastest=True)["trial"] == 2  # 0.4 ms; trial 3 is out of the margin
    assert choose_winner(promoted, margin=0.0, fastest=True)["trial"] == 1  # the only one at 100%
    assert choose_winner(promoted, margin=1.0)["trial"] == 4  # without a target: NetScore, as before


def test_with_a_target_a_rung2_gap_inside_the_validation_noise_does_not_cost_the_faster_net_its_place():
    """NEU's 10M rung of the reference run: the prototype (fastest) trailed by 4 of 240 validation images
    after one short seed; inside two standard errors (2.9 points) it is as good as the best, so it wins."""
    promoted = [{"trial": 53, "val_accuracy": 98.33, "val_netscore": 80.0, "latency_ms": 0.48},
                {"trial": 0, "val_accuracy": 96.67, "val_netscore": 79.0, "latency_ms": 0.42},
                {"trial": 7, "val_accuracy": 92.0, "val_netscore": 85.0, "latency_ms": 0.30}]
    assert choose_winner(promoted, margin=1.0, fastest=True, val_images=240)["trial"] == 0
    assert choose_winner(promoted, margin=1.0, fastest=True)["trial"] == 53  # without the set's size: the margin
    assert choose_winner(promoted, margin=1.0, fastest=True, val_images=5000)["trial"] == 53  # 2 SE = 0.6 points
    assert choose_winner(promoted, margin=1.0, val_images=240)["trial"] == 53  # no target: the margin alone


def test_an_older_run_config_loads_with_todays_defaults_for_new_keys():
    old = {**SearchConfig().to_dict(), "search_share": 0.8, "baseline_epochs": None}
    for key in ("explore_share", "promote_share", "promote_epochs", "accuracy_margin", "patience"):
        old.pop(key)
    assert SearchConfig.from_dict(old).to_dict() == SearchConfig().to_dict()


def test_a_short_time_budget_is_kept_and_the_summary_says_what_each_finalist_trained(tmp_path):
    from PIL import Image
    from test_search import cli  # the same subprocess helper and tiny dataset as the search tests

    ds = learnable_dataset(classes=3, per_class=30, size=48)
    parts = tmp_path / "parts"
    for i, (img, label) in enumerate(zip(ds.images, ds.labels)):
        (parts / ds.class_names[int(label)]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(parts / ds.class_names[int(label)] / f"{i}.png")
    budget = 50
    argv = ["search", "--dataset", str(parts), "--budget-flops", "2e6", "--epochs", "3", "--min-epochs", "1",
            "--proxy-input-size", "32", "--min-accuracy", "0", "--top-k", "2", "--promote-share", "0.3",
            "--final-seeds", "2", "--final-epochs", "100000", "--patience", "100000", "--promote-epochs", "100000",
            "--workers", "2", "--time-budget", f"{budget}s", "--results", str(tmp_path / "r"), "--json"]
    start = time.time()
    out = json.loads(cli(*argv).stdout)
    took = time.time() - start
    assert took <= budget + 8, took  # the whole command, interpreter start-up included
    summary = json.loads((Path(out["run_dir"]) / "summary.json").read_text())
    assert summary["timeline"]["wall_s"] <= budget + 2
    seeds = summary["winner"]["final"]["seeds"]
    # each seed's schedule was sized to the time it had (not the 100000-epoch cap) and ended with it
    assert len(seeds) == 2 and all(s["stop_reason"] in ("time", "epochs") for s in seeds)
    assert all(1 <= s["epochs_run"] <= s["planned_epochs"] < 100000 for s in seeds)
    assert summary["winner"]["epochs_run"] == [s["epochs_run"] for s in seeds]
    promoted = summary["promotion"]
    assert len(promoted) == 2 and sum(p["chosen"] for p in promoted) == 1
    assert all(1 <= p["epochs_run"] <= p["planned_epochs"] < 100000 for p in promoted)
    curves = (Path(out["run_dir"]) / "learning_curves.csv").read_text().splitlines()
    assert len(curves) - 1 == sum(s["epochs_run"] for s in seeds) + sum(p["epochs_run"] for p in promoted)


def test_a_phase_after_exploration_is_shown_epoch_by_epoch_and_leaves_no_progress_files(tmp_path):
    """The final seeds (and rung 2, baselines) train in pool processes: each epoch reaches the live
    view with its schedule, score and pace, and the terminal shows an ETA per job."""
    from concurrent.futures import ThreadPoolExecutor

    from rich.console import Console

    from defect_nas.cli.progress import jobs_table
    from defect_nas.nas.phases import PROGRESS, _progress_file, progress_path, wait_watched

    def job(tag: str) -> None:
        write = _progress_file(progress_path(tmp_path, tag), tag)
        for epoch in (1, 2, 3):
            write(epoch, 90.0 + epoch, {"planned": 10, "seconds": 6.0 * epoch})
            time.sleep(1.5)

    seen = []
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(job, tag) for tag in ("seed 0", "seed 1")]
        wait_watched(futures, ["seed 0", "seed 1"], tmp_path, "final", lambda phase, jobs: seen.append((phase, jobs)))
    phase, jobs = seen[-1]
    assert phase == "final" and sorted(j["job"] for j in jobs) == ["seed 0", "seed 1"]
    assert all(j["epoch"] == 3 and j["planned"] == 10 and j["val"] == 93.0 for j in jobs)
    assert not (tmp_path / PROGRESS).exists()
    console = Console(width=100, record=True)
    console.print(jobs_table({"phase": phase, "jobs": jobs, "end": time.time() + 600}))
    text = " ".join(console.export_text().split())  # the title wraps at the table's width
    assert "final: 2 training(s) under way; 10 min of the run left" in text
    assert "3/10" in text and "93.00" in text and "~1 min" in text  # 7 epochs left at 6 s each


@pytest.mark.slow
def test_images_of_varying_non_square_sizes_reach_a_retrained_winner_at_full_resolution(tmp_path):
    """A 425-image dataset of 120-200 px crops (budget_wall.py) once reached the final phase at a
    184 x 186 "full resolution": the rotated views no longer fitted the batch, every final seed
    failed, and the winner was a proxy-fidelity trial. The data is now squared as predict sees it."""
    import numpy as np
    from PIL import Image
    from test_search import cli

    ds = learnable_dataset(classes=3, per_class=20, size=48)
    rng = np.random.default_rng(0)
    parts = tmp_path / "parts"
    for i, (img, label) in enumerate(zip(ds.images, ds.labels)):
        h, w = (int(v) for v in rng.integers(36, 49, size=2))
        (parts / ds.class_names[int(label)]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()[:h, :w]).save(parts / ds.class_names[int(label)] / f"{i}.png")
    argv = ["search", "--dataset", str(parts), "--budget-flops", "2e6", "--epochs", "2", "--min-epochs", "1",
            "--proxy-input-size", "32", "--min-accuracy", "0", "--top-k", "1", "--promote-epochs", "1",
            "--final-seeds", "1", "--final-epochs", "2", "--trials", "3", "--workers", "1",
            "--results", str(tmp_path / "r"), "--json"]
    out = json.loads(cli(*argv).stdout)
    summary = json.loads((Path(out["run_dir"]) / "summary.json").read_text())
    winner = summary["winner"]
    assert winner["retrained"] is True and winner["final"]["seeds"][0]["epochs_run"] == 2
    assert not any("failed" in n or "not retrained" in n for n in summary["notes"]), summary["notes"]
    side = winner["input_size"]
    assert 36 <= side <= 48 and (Path(out["run_dir"]) / "winner" / "model.onnx").is_file()


def test_fewer_final_seeds_train_when_the_time_left_cannot_bring_each_to_convergence():
    """A line set once gave each of 3 seeds 9 epochs at 300 px: now fewer seeds train longer, and
    the run says what all of them would have needed."""
    from defect_nas.nas.plan import MIN_FINAL_EPOCHS, seeds_that_fit

    assert MIN_FINAL_EPOCHS == 40
    assert seeds_that_fit(3, pace=100.0, train_images=1000, seconds=1200) == (3, 40.0)  # enough for all three
    assert seeds_that_fit(3, pace=100.0, train_images=1000, seconds=900) == (2, 45.0)
    assert seeds_that_fit(3, pace=100.0, train_images=1000, seconds=300) == (1, 30.0)  # short even alone
    assert seeds_that_fit(3, pace=None, train_images=1000, seconds=300)[0] == 3  # no measurement: as asked
