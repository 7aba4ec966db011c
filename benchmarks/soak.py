"""Soak test: searches whose workers are killed at random lose, repeat and strand no trial.

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/soak.py \
        [--postgres URL] [--minutes 10] [--kill-every 60] [--seed 0]

Two real searches on NEU at a cheap proxy (32 px, 2 epochs) run side by side: one with 4
workers on a PostgreSQL study (``--postgres``, default: ``scripts/start_postgres.sh``'s), one
with 2 workers on its run folder's SQLite study. Every ``--kill-every`` seconds for ``--minutes``
one of their worker processes, drawn at random, is killed with SIGKILL (as the out-of-memory
killer would). Then, per study, trials are counted by state, and the three promises checked:

- lost: a trial whose worker died and that was neither retried nor finished (FAIL without retry);
- duplicated: a queued trial (a prototype or a retry) trained by two workers, or a trial number twice;
- left RUNNING: any trial still RUNNING after the search ended.

Writes results/benchmarks/soak.{csv,json} (one row per study) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CHEAP = ["--dataset", "neu", "--budget-flops", "5e6", "--proxy-input-size", "32", "--epochs", "2", "--min-epochs", "1",
         "--top-k", "1", "--final-seeds", "1", "--final-epochs", "1", "--final-input-size", "32", "--baselines", "none",
         "--teacher", "none", "--min-accuracy", "0", "--explore-share", "0.9", "--promote-share", "0.02", "--json"]


def workers_of(pid: int) -> list[int]:
    """The worker processes of a search (its children, less multiprocessing's resource tracker)."""
    try:
        kids = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return [k for k in kids if "resource_tracker" not in _cmdline(k)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def audit(study_name: str, url: str) -> dict:
    """Trial counts by state and the three promises, from the study itself."""
    import optuna

    from defect_nas.nas.storage import open_storage

    trials = optuna.load_study(study_name=study_name, storage=open_storage(url)).trials
    states = Counter(t.state.name for t in trials)
    retried = {t.user_attrs.get("retry_of", t.system_attrs.get("failed_trial")) for t in trials}  # ours, optuna's
    retried.discard(None)
    failed_unretried = [t.number for t in trials if t.state.name == "FAIL" and t.number not in retried]
    trained = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    queued_keys = Counter((t.user_attrs.get("prototype"), t.user_attrs.get("retry_of")) for t in trained
                          if t.user_attrs.get("prototype") or t.user_attrs.get("retry_of") is not None)
    numbers = Counter(t.number for t in trials)
    return {"trials": len(trials), **{f"state_{k.lower()}": v for k, v in sorted(states.items())},
            "retried": len(retried), "lost": len(failed_unretried),
            "duplicated": sum(n - 1 for n in [*queued_keys.values(), *numbers.values()] if n > 1),
            "left_running": states.get("RUNNING", 0)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--postgres", help="PostgreSQL URL (default: start the local one, scripts/start_postgres.sh)")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--kill-every", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pg = args.postgres or subprocess.run(["bash", str(ROOT / "scripts/start_postgres.sh")], capture_output=True,
                                         text=True, check=True).stdout.strip()
    rng = random.Random(args.seed)
    budget = f"{args.minutes + 1.5:g}m"  # exploration (90% of it) outlasts the kills
    tag = f"soak-{os.getpid()}-{int(time.time())}"
    results = Path(tempfile.mkdtemp(prefix="defect-nas-soak-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    runs = {"postgresql, 4 workers": (["--storage", pg, "--workers", "4"], pg),
            "sqlite, 2 workers": (["--workers", "2"], None)}
    procs = {}
    for i, (name, (extra, _)) in enumerate(runs.items()):
        run = f"{tag}-{i}"
        argv = [sys.executable, "-m", "defect_nas", "search", *CHEAP, *extra, "--time-budget", budget,
                "--results", str(results), "--run", run, "--seed", str(args.seed)]
        procs[name] = (subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), run)
    kills = []
    start = time.time()
    while time.time() - start < args.minutes * 60:
        time.sleep(args.kill_every)
        candidates = [(name, w) for name, (p, _) in procs.items() for w in workers_of(p.pid)]
        if candidates:
            name, victim = rng.choice(candidates)
            os.kill(victim, signal.SIGKILL)
            kills.append({"t_s": round(time.time() - start, 1), "search": name, "pid": victim})
            print(f"[{kills[-1]['t_s']:.0f} s] killed a worker of the {name} search (pid {victim})", flush=True)
    rows = []
    for name, (p, run) in procs.items():
        stdout, stderr = p.communicate(timeout=1800)
        summary = json.loads(stdout) if p.returncode == 0 and stdout.strip() else {}
        if summary.get("workers_died") is None:  # an older --json summary: count the deaths the run logged
            summary["workers_died"] = json.loads((results / run / "summary.json").read_text()).get("workers_died")
        url = runs[name][1] or f"sqlite:///{results / run / 'study.db'}"
        rows.append({"search": name, "exit": p.returncode, "kills": sum(k["search"] == name for k in kills),
                     "workers_died": summary.get("workers_died"), **audit(run, url),
                     "winner": (summary.get("winner") or {}).get("name"),
                     "stderr_tail": stderr.strip().splitlines()[-1] if stderr.strip() else ""})
    df = pd.DataFrame(rows)
    df.to_csv(out / "soak.csv", index=False)
    from defect_nas.measure.runinfo import environment

    (out / "soak.json").write_text(json.dumps({
        "rows": rows, "kills": kills,
        "protocol": {"minutes": args.minutes, "kill_every_s": args.kill_every, "seed": args.seed,
                     "searches": {k: v[0][:-1] + ["<url>"] if v[1] else v[0] for k, v in runs.items()},
                     "search_flags": CHEAP, "time_budget": budget},
        "environment": environment(args.seed),
    }, indent=2, default=str))
    print(df.drop(columns=["stderr_tail"]).to_string(index=False))
    bad = df[(df["lost"] > 0) | (df["duplicated"] > 0) | (df["left_running"] > 0) | (df["exit"] != 0)]
    sys.exit(1 if len(bad) else 0)


if __name__ == "__main__":
    main()
