"""What a person sees of a long command: a search's live table and closing lines, a training's
progress bar with ETA."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from defect_nas.cli.output import console, millions


def jobs_table(info: dict) -> Table:
    """A phase after exploration (rung 2, final seeds, baselines): each job's epoch of its planned
    schedule, last validation score and pace, and the time left of the run."""
    left = f"; {max(0, info['end'] - time.time()) / 60:.0f} min of the run left" if info.get("end") else ""
    table = Table(title=f"{info['phase']}: {len(info['jobs'])} training(s) under way{left}")
    for col in ("job", "epoch", "val %", "s/epoch", "ETA"):
        table.add_column(col)
    for j in info["jobs"]:
        pace = j["seconds"] / j["epoch"] if j["epoch"] else 0.0
        eta = f"~{max(0, (j['planned'] or j['epoch']) - j['epoch']) * pace / 60:.0f} min" if pace else ""
        table.add_row(j["job"], f"{j['epoch']}/{j['planned']}", f"{j['val']:.2f}", f"{pace:.1f}", eta)
    return table


def progress_table(study, info: dict) -> Table:
    """Exploration's live table (trials, rate, time left), or a later phase's ``jobs_table``."""
    if info.get("jobs") is not None:
        return jobs_table(info)
    from defect_nas.nas.rows import trial_rows

    rows = trial_rows(study)
    done = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
    scored = [r for r in rows if r["state"] == "COMPLETE" and r["feasible"] and r.get("utility")]
    elapsed = time.time() - info["started"]
    rate = len(done) / elapsed * 3600 if elapsed > 0 else 0.0
    eta = ""
    if info.get("deadline"):
        eta = f"{max(0, info['deadline'] - time.time()) / 60:.0f} min of exploration left"
        if info.get("end"):
            eta += f", {max(0, info['end'] - time.time()) / 60:.0f} min of the run"
    elif info.get("n_trials") and rate > 0:
        eta = f"~{max(0, info['n_trials'] - len(done)) / rate * 60:.0f} min left"
    best = max(scored, key=lambda r: r["utility"], default=None)  # by the search's objective
    objective = info.get("objective", "netscore")
    label = "NetScore" if objective == "netscore" else objective
    title = f"{len(done)} trials done, {rate:.0f}/hour; {eta}"
    if best:
        title += (f"\nbest: #{best['number']} val {best['val_accuracy']:.1f}%, {millions(best['macs'])} MACs,"
                  f" {label} {best['utility']:.2f}")
    table = Table(title=title)
    for col in ("#", "state", "space", "MACs", "params", "val %", label, "s"):
        table.add_column(col)
    for r in rows[-10:]:
        table.add_row(str(r["number"]), r["state"], str(r["space"] or ""), millions(r["macs"]) if r["macs"] else "",
                      f"{r['params']:,}" if r["params"] else "",
                      f"{r['val_accuracy']:.1f}" if r["val_accuracy"] is not None else "",
                      f"{r['utility']:.2f}" if r.get("utility") else "",
                      f"{r['duration_s']:.0f}" if r["duration_s"] else "")
    return table


def print_summary(summary: dict) -> None:
    w = summary.get("winner")
    console.print("trials: " + ", ".join(f"{n} {state.lower()}" for state, n in summary["trial_counts"].items()))
    if not w:
        console.print("no winner (no trial finished)")
        return
    console.print(
        f"[bold]winner[/]: {w['name']}: test {w.get('metric', 'accuracy').replace('_', ' ')} "
        f"[bold]{w['test_accuracy_mean']:.2f}% +-"
        f" {w['test_accuracy_std']:.2f}[/] ({w['seeds']} seeds), {w['macs']:,} MACs, {w['params']:,} params,"
        f" NetScore {w['netscore']:.2f} dB, {w['latency_ms']:.2f} ms eager / {w['latency_onnx_ms']:.2f} ms ONNX"
    )
    if not str(summary.get("objective", "netscore:")).startswith("netscore:"):
        console.print(f"chosen by: {summary['objective']}")
    console.print(f"trained: {w.get('fidelity')}; run took {summary.get('timeline', {}).get('wall_s', 0) / 60:.1f} min")
    for note in summary.get("notes", []):
        console.print(f"note: {note}")
    console.print(f"report: {summary['run_dir']}/report.html; model: {summary['run_dir']}/winner/")


@contextmanager
def epoch_progress(total: int, what: str, quiet: bool) -> Iterator[Callable[[int, float, dict], None]]:
    """An ``on_epoch`` callback for a training of up to ``total`` epochs: a rich bar with the last
    validation score, elapsed time and ETA on a terminal; one line per epoch when piped (logs)."""
    if quiet:
        yield lambda epoch, score, record: None
        return
    if not console.is_terminal:
        yield lambda epoch, score, record: console.print(
            f"{what}: epoch {epoch}/{total}: loss {record['loss']:.3f}, val {score:.2f}% "
            f"({record['seconds']:.0f} s)", style="dim", highlight=False)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("epochs"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(what, total=total)

        def on_epoch(epoch: int, score: float, record: dict) -> None:
            bar.update(task, completed=epoch, description=f"{what}: val {score:.2f}%")

        yield on_epoch
