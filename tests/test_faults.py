"""Faults lose nothing: concurrent claims of queued trials, dead workers, Ctrl-C in each phase, and a
resumed sampler that does not replay its draws. The process tests run real searches on tiny data."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from datagen import learnable_dataset
from PIL import Image

from defect_nas.cli.main import main
from defect_nas.core.search_config import SearchConfig
from defect_nas.nas.storage import open_storage
from defect_nas.nas.strategies import make_sampler

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--budget-flops", "2e6", "--min-epochs", "1", "--proxy-input-size", "32", "--final-seeds", "1",
        "--promote-epochs", "2", "--teacher", "none", "--min-accuracy", "0", "--baselines", "none", "--json"]
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _claim_all(url: str, barrier, out) -> None:
    study = optuna.load_study(study_name="queue", storage=open_storage(url))
    barrier.wait()  # all claim at once
    got = []
    while (trial_id := study._pop_waiting_trial_id()) is not None:  # what study.ask / optimize call
        got.append(trial_id)
    out.put(got)


def _start_up_and_sleep() -> None:
    time.sleep(1)


def test_a_ctrl_c_while_a_worker_starts_neither_kills_it_nor_prints_its_traceback():
    """CI caught a worker importing torch when Ctrl-C reached the process group: it printed a
    KeyboardInterrupt traceback before its own code could ignore SIGINT. Children started inside
    children_ignore_stop_signals survive a SIGINT sent during their start-up, and the parent keeps its handler."""
    from defect_nas.nas.procs import children_ignore_stop_signals

    before = signal.getsignal(signal.SIGINT)
    p = mp.get_context("spawn").Process(target=_start_up_and_sleep)
    with children_ignore_stop_signals():
        p.start()
    os.kill(p.pid, signal.SIGINT)  # the child is still starting its interpreter
    p.join(timeout=60)
    assert p.exitcode == 0
    assert signal.getsignal(signal.SIGINT) is before


def test_concurrent_claims_take_each_queued_trial_exactly_once(tmp_path):
    """Six processes claiming 40 queued trials on SQLite: before the fix, 66 claims of 40 trials
    (two workers trained the same trial and the second died on tell)."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="queue", storage=open_storage(url))
    for i in range(40):
        study.enqueue_trial({"x": i}, skip_if_exists=False)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(url, barrier, out)) for _ in range(6)]
    for p in procs:
        p.start()
    claims = [t for _ in procs for t in out.get(timeout=120)]
    for p in procs:
        p.join(timeout=30)
    assert sorted(claims) == sorted({t._trial_id for t in study.trials})  # each once, none left waiting


def test_a_resumed_sampler_does_not_replay_the_draws_of_the_first_session():
    """Each session's workers seed their samplers past the trials the study already holds."""
    config = SearchConfig(strategy="random")

    def draws(trials_before: int) -> list[int]:
        study = optuna.create_study(sampler=make_sampler(config, 0, trials_before))
        return [study.ask().suggest_int("x", 0, 10**9) for _ in range(4)]

    assert draws(0) == draws(0)  # a fresh search is reproducible
    assert draws(7) != draws(0)  # a resumed one draws anew


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> Path:
    ds = learnable_dataset(classes=3, per_class=30, size=48)
    root = tmp_path_factory.mktemp("data") / "parts"
    for i, (img, label) in enumerate(zip(ds.images, ds.labels)):
        (root / ds.class_names[int(label)]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(root / ds.class_names[int(label)] / f"{i}.png")
    return root


def start(argv: list[str], log: Path | None = None, cwd: Path | None = None, **env: str) -> subprocess.Popen:
    """The search in its own process group (as a terminal runs it); stderr to ``log`` to watch its phases."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env}
    err = subprocess.PIPE if log is None else open(log, "w")  # noqa: SIM115 (the child holds it)
    return subprocess.Popen([sys.executable, "-m", "defect_nas", "search", *argv], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=err, start_new_session=True, cwd=cwd)


def search_argv(parts: Path, results: Path, run: str, epochs: int, n_trials: int) -> list[str]:
    """A tiny two-worker search that goes straight from exploration to a one-epoch final."""
    return ["--dataset", str(parts), *TINY, "--epochs", str(epochs), "--top-k", "1", "--final-epochs", "1",
            "--workers", "2", "--trials", str(n_trials), "--results", str(results), "--run", run]


def without(argv: list[str], flag: str) -> list[str]:
    """``argv`` less ``flag`` and its value."""
    i = argv.index(flag)
    return argv[:i] + argv[i + 2:]


def trials(run: Path) -> list[optuna.trial.FrozenTrial]:
    if not (run / "study.db").is_file():
        return []
    try:
        return optuna.load_study(study_name=run.name, storage=open_storage(f"sqlite:///{run / 'study.db'}")).trials
    except KeyError:  # not created yet
        return []


def wait_for(condition, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.5)


def children(pid: int) -> list[int]:
    """Child processes of ``pid`` started by any of its threads (a pool may spawn from another thread
    than the main one; reading the main thread's list alone once made a CI run wait 300 s)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # the thread or the process ended meanwhile
            pass
    return out


def test_two_workers_end_with_exactly_the_trials_asked_for(parts, tmp_path):
    """With only finished trials counted, a worker started one more while the other's last ran."""
    argv = search_argv(parts, tmp_path, "five", epochs=2, n_trials=5)
    p = start(argv)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-2000:]
    assert len([t for t in trials(tmp_path / "five") if t.state in FINISHED]) == 5


@pytest.mark.slow
def test_kill_9_of_the_search_loses_no_finished_trial_and_the_resume_completes(parts, tmp_path):
    run = tmp_path / "killed"
    argv = search_argv(parts, tmp_path, "killed", epochs=6, n_trials=10)
    p = start(argv)
    wait_for(lambda: len([t for t in trials(run) if t.state == optuna.trial.TrialState.COMPLETE]) >= 2)
    os.killpg(p.pid, signal.SIGKILL)  # the search and its workers (they die with it anyway)
    p.wait()
    before = {t.number: t.value for t in trials(run) if t.state == optuna.trial.TrialState.COMPLETE}
    resumed = start(argv)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    after = trials(run)
    assert all(after[n].value == v for n, v in before.items())  # nothing finished was lost
    assert optuna.trial.TrialState.RUNNING not in [t.state for t in after]  # nothing left hanging
    assert len([t for t in after if t.state in FINISHED]) >= 10


@pytest.mark.slow
def test_a_killed_worker_is_reported_its_trial_retried_and_the_search_completes(parts, tmp_path):
    """As the out-of-memory killer would: kill -9 one worker process, not the search."""
    run = tmp_path / "oom"
    p = start(search_argv(parts, tmp_path, "oom", epochs=8, n_trials=8))
    wait_for(lambda: any(t.state == optuna.trial.TrialState.RUNNING for t in trials(run)) and children(p.pid))
    victim = [c for c in children(p.pid) if "resource_tracker" not in Path(f"/proc/{c}/cmdline").read_text()][0]
    os.kill(victim, signal.SIGKILL)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["workers_died"] >= 1 and summary["winner"] is not None
    states = [t.state for t in trials(run)]
    assert optuna.trial.TrialState.RUNNING not in states
    assert len([s for s in states if s in FINISHED]) == 8  # the search still got every trial it asked for


@pytest.mark.slow
def test_ctrl_c_while_exploring_writes_results_exits_130_and_the_resume_retries_the_cut_trials(parts, tmp_path):
    """The resume is given the run's config.json alone (--config of a run folder resumes that folder:
    it used to start a new run under the default name, in the current folder)."""
    run = tmp_path / "cut"
    argv = search_argv(parts, tmp_path, "cut", epochs=8, n_trials=8)
    p = start(argv)
    wait_for(lambda: len([t for t in trials(run) if t.state in FINISHED]) >= 1)
    sent = time.time()
    os.killpg(p.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and time.time() - sent < 30, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("defect-nas: interrupted")
    assert json.loads((run / "summary.json").read_text())["interrupted"] is True
    before = {t.number: t.value for t in trials(run) if t.state == optuna.trial.TrialState.COMPLETE}
    assert optuna.trial.TrialState.RUNNING not in [t.state for t in trials(run)]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = start(["--config", str(run / "config.json"), "--json"], cwd=elsewhere)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    assert json.loads(out)["run_dir"] == str(run) and not any(elsewhere.iterdir())
    after = trials(run)
    assert all(after[n].value == v for n, v in before.items())  # nothing finished was lost or redone
    assert len([t for t in after if t.state in FINISHED]) >= 8


def stopped_cleanly(run: Path, err: str, status: int) -> dict:
    """What a search stopped by a signal must leave: one last line saying how to resume, no traceback,
    trials.csv, report.html and summary.json written, no trial RUNNING, no SQLite journal. The summary."""
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("defect-nas: interrupted"), err[-2000:]
    assert "run the same command to resume" in err.strip().splitlines()[-1]
    assert (run / "trials.csv").is_file() and (run / "report.html").is_file()
    assert optuna.trial.TrialState.RUNNING not in [t.state for t in trials(run)]
    assert not (run / "study.db-journal").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert summary["stopped_by"] == signal.Signals(status - 128).name
    return summary


@pytest.mark.slow
@pytest.mark.parametrize("phase, flags, signum", [
    ("rung 2", ["--top-k", "2", "--promote-epochs", "400", "--trials", "6"], signal.SIGTERM),
    ("final", ["--top-k", "1", "--final-epochs", "400", "--patience", "400", "--trials", "3"], signal.SIGTERM),
    ("final", ["--top-k", "1", "--final-epochs", "400", "--patience", "400", "--trials", "3"], signal.SIGINT),
], ids=["rung 2 SIGTERM", "final SIGTERM", "final SIGINT"])
def test_a_stop_signal_to_the_search_alone_after_exploring_exports_the_best_trial(phase, flags, signum, parts,
                                                                                  tmp_path):
    """SIGTERM as `docker stop`, systemd or a supervisor sends it, SIGINT as `timeout -s INT`: to the main
    process only, mid rung 2 or mid final training (both run in a pool the search kills). SIGTERM used
    to end the search at once: exit 143, no message, no summary, report or winner, a trial RUNNING."""
    log, run = tmp_path / "stderr.log", tmp_path / "final"
    p = start(["--dataset", str(parts), *TINY, "--epochs", "2", "--workers", "1", *flags, "--results",
               str(tmp_path), "--run", "final"], log)
    wait_for(lambda: f"{phase}: " in log.read_text())  # the phase began: its pool starts training
    time.sleep(2)
    sent = time.time()
    p.send_signal(signum)
    p.communicate(timeout=120)
    assert p.returncode == 128 + signum and time.time() - sent < 30, log.read_text()[-2000:]
    summary = stopped_cleanly(run, log.read_text(), p.returncode)
    assert summary["winner"]["retrained"] is False
    assert (run / "winner" / "weights.safetensors").is_file()


@pytest.mark.slow
def test_sigterm_to_the_whole_search_while_exploring_writes_results_and_exits_143(parts, tmp_path):
    """As systemd stops a service: SIGTERM to every process of it, workers included (they ignore it;
    the search kills them, fails and re-queues their trials). Also: --workers beyond the cores is capped."""
    log, run = tmp_path / "stderr.log", tmp_path / "term"
    p = start(without(search_argv(parts, tmp_path, "term", epochs=8, n_trials=8), "--workers") + ["--workers", "999"],
              log)
    wait_for(lambda: len([t for t in trials(run) if t.state in FINISHED]) >= 1)
    sent = time.time()
    os.killpg(p.pid, signal.SIGTERM)
    p.communicate(timeout=120)
    assert p.returncode == 143 and time.time() - sent < 30, log.read_text()[-2000:]
    stopped_cleanly(run, log.read_text(), 143)
    cores = len(os.sched_getaffinity(0))
    assert f"--workers 999 capped at {cores}" in log.read_text()
    assert json.loads((run / "environment.json").read_text())["workers"] == cores


@pytest.mark.slow
def test_ctrl_c_while_the_teacher_trains_exits_130_and_leaves_no_half_written_cache(parts, tmp_path):
    """Set-up's long step (a teacher's first training): nothing is searched yet, nothing is cached half."""
    log, cache = tmp_path / "stderr.log", tmp_path / "cache"
    p = start(["--dataset", str(parts), *without(TINY, "--teacher"), "--teacher", "vgg16",
               "--teacher-init", "scratch", "--teacher-epochs", "500", "--teacher-input-size", "32",
               "--trials", "3", "--results", str(tmp_path), "--run", "setup"], log, DEFECT_NAS_CACHE=str(cache))
    wait_for(lambda: "teacher epoch 1/" in log.read_text())
    os.killpg(p.pid, signal.SIGINT)
    p.communicate(timeout=120)
    err = log.read_text()
    assert p.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("defect-nas: interrupted")
    assert not any((cache / "teachers").glob("*/meta.json"))  # no entry a later run would trust
    assert not (tmp_path / "setup" / "summary.json").exists()


@pytest.mark.slow
def test_ctrl_c_while_baselines_train_keeps_and_exports_the_winners_trained_seeds(parts, tmp_path):
    """Baselines come after the winner's final seeds: interrupting them must not throw those away."""
    log, run = tmp_path / "stderr.log", tmp_path / "base"
    p = start(["--dataset", str(parts), *without(TINY, "--baselines"), "--baselines",
               "resnet50", "--epochs", "2", "--workers", "1", "--top-k", "1", "--trials", "2", "--final-epochs",
               "300", "--patience", "300", "--final-input-size", "32", "--results", str(tmp_path), "--run", "base"],
              log)
    wait_for(lambda: "training baselines" in log.read_text())
    time.sleep(1)
    os.killpg(p.pid, signal.SIGINT)
    p.communicate(timeout=120)
    err = log.read_text()
    assert p.returncode == 130 and "Traceback" not in err, err[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["winner"]["retrained"] is True
    assert summary["winner"]["epochs_run"] and "baselines not trained: interrupted" in summary["notes"]
    assert (run / "winner" / "weights.safetensors").is_file() and (run / "winner" / "model.onnx").is_file()


def test_a_trial_cut_before_its_worker_tagged_it_is_failed_and_queued_again(parts, tmp_path, monkeypatch):
    """Ctrl-C can land between optuna creating a worker's trial (RUNNING) and the worker naming its
    process on it; that trial must not stay RUNNING (CI once saw it). Deterministic: exploration is
    replaced by one that creates such a trial and is interrupted."""
    from defect_nas.nas import run

    def cut_explore(study, *args, **kwargs):
        study.ask()  # RUNNING, no "worker" attribute yet
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "explore", cut_explore)
    config = SearchConfig(dataset=str(parts), budget_flops=2e6, proxy_input_size=32, trials=2, min_accuracy=0)
    summary = run.run_search(config, tmp_path / "run", log=lambda m: None)
    study = optuna.load_study(study_name="run", storage=open_storage(f"sqlite:///{tmp_path / 'run' / 'study.db'}"))
    states = [t.state for t in study.trials]
    assert summary["interrupted"] is True and optuna.trial.TrialState.RUNNING not in states
    assert optuna.trial.TrialState.FAIL in states  # failed, and (with the queued prototype) waiting to be retried
    cut = next(t for t in study.trials if t.state == optuna.trial.TrialState.FAIL)
    retry = next(t for t in study.trials if t.state == optuna.trial.TrialState.WAITING)
    assert retry.user_attrs["retry_of"] == cut.number
    assert retry.user_attrs["prototype"] == cut.user_attrs["prototype"]  # the cut prototype is retried as one


def _image_folder(root: Path, duplicate_across_classes: bool = False) -> Path:
    """20 tiny images in 2 classes; optionally class b's first image is a copy of one of class a."""
    ds = learnable_dataset(classes=2, per_class=10, size=32)
    for i, (img, label) in enumerate(zip(ds.images, ds.labels)):
        (root / ds.class_names[int(label)]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(root / ds.class_names[int(label)] / f"{i}.png")
    if duplicate_across_classes:
        a, b = ds.class_names
        copy = next((root / a).iterdir())
        (root / b / "copy.png").write_bytes(copy.read_bytes())
    return root


def _terminate_self(*args, **kwargs):
    """Where a command's long step runs: SIGTERM arrives as from `docker stop`."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)  # the handler interrupts this at once
    pytest.fail("SIGTERM did not stop the step")


TRAIN = ["--arch", "prototype:lw/lw@0.35", "--epochs", "1", "--no-latency", "--threads", "1", "--json"]


@pytest.mark.parametrize("command, step", [
    ("train", "defect_nas.evaluators.run.train_spec"),
    ("teacher", "defect_nas.cli.evaluate.ensure_teacher"),
])
def test_sigterm_while_train_or_teacher_works_is_one_line_exit_143_and_nothing_written(command, step, tmp_path,
                                                                                       monkeypatch, capsys):
    """SIGTERM used to kill them without a word; now it stops them as Ctrl-C does (exit 143)."""
    data = _image_folder(tmp_path / "data")
    monkeypatch.setattr(step, _terminate_self)
    argv = [command, "--dataset", str(data), "--teacher", "vgg16", "--cache", str(tmp_path / "cache")]
    if command == "train":
        argv = ["train", "--dataset", str(data), "--teacher", "none", *TRAIN, "--results", str(tmp_path / "r")]
    assert main(argv) == 143
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and err.startswith("defect-nas: interrupted by SIGTERM") and "run the same" in err
    assert not (tmp_path / "cache").exists() and not any((tmp_path / "r").glob("*"))


def test_sigterm_to_a_worker_fails_its_running_trial_and_exits_143(parts, tmp_path, monkeypatch, capsys):
    """`defect-nas worker` on another machine, stopped by its supervisor mid-trial: the trial is
    failed (not left RUNNING for ever), one line, exit 143."""
    from defect_nas.nas import workers

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    config = SearchConfig(dataset=str(parts), budget_flops=2e6, proxy_input_size=32, trials=2, min_accuracy=0)
    workers.create_or_load_study(config, open_storage(url), "shared")

    class Stopped:
        def __init__(self, ctx, on_start=None):
            pass

        def __call__(self, trial):
            _terminate_self()

    monkeypatch.setattr(workers, "Objective", Stopped)
    assert main(["worker", "--study", "shared", "--storage", url, "--threads", "1", "--results",
                 str(tmp_path / "r")]) == 143
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("defect-nas: interrupted by SIGTERM")
    states = [t.state for t in optuna.load_study(study_name="shared", storage=open_storage(url)).trials]
    assert states and optuna.trial.TrialState.RUNNING not in states


def test_train_whose_teacher_is_judged_unusable_trains_the_student_without_distillation(tmp_path, monkeypatch,
                                                                                      capsys):
    """The default VGG16 teacher at chance on a small folder: train said the students train without
    distillation, then exited 2 ('distillation asked for (kd != none) but no teacher logits') and
    trained nothing."""
    from types import SimpleNamespace

    import defect_nas.cli.evaluate as evaluate

    at_chance = SimpleNamespace(provenance="trained here", test_accuracy=50.0, val_accuracy=0.0,
                                config=SimpleNamespace(arch="vgg16"), logits=None)
    monkeypatch.setattr(evaluate, "ensure_teacher", lambda *a, **k: at_chance)  # 85 s of VGG16 training spared
    data = _image_folder(tmp_path / "data")
    assert main(["train", "--dataset", str(data), *TRAIN, "--results", str(tmp_path / "r")]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["test_accuracy"] is not None and result["teacher"] is None
    config = json.loads((Path(result["run_dir"]) / "config.json").read_text())
    assert "trained without distillation" in config["teacher_dropped"] and config["train"]["kd"] == "none"


def test_the_same_image_filed_under_two_classes_is_warned_about_at_load(tmp_path, capsys):
    """It trained silently: one copy is mislabelled, and training learns both labels for one picture."""
    data = _image_folder(tmp_path / "data", duplicate_across_classes=True)
    assert main(["train", "--dataset", str(data), "--teacher", "none", *TRAIN, "--results", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "defect-nas: warning: 1 image(s)" in err and "filed under two or more classes" in err
    assert "copy.png (" in err
