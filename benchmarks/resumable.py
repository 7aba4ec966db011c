"""The job runner the long training benchmarks share: trainings in spawned processes, each row
appended to the benchmark's runs CSV as it ends, so a benchmark resumes where it stopped and can
be split across sessions."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd

from defect_nas.core.files import append_csv_row, read_csv_rows


def run_jobs(fn: Callable[..., dict], jobs: Sequence[tuple], runs_csv: Path, fields: list[str], workers: int,
             extra: tuple = ()) -> None:
    """``fn(*job, *extra)`` for every job, ``workers`` at once; ``fn`` returns the row to append."""
    print(f"{len(jobs)} training(s) to run, {workers} at a time", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        for f in as_completed([pool.submit(fn, *job, *extra) for job in jobs]):
            row = f.result()
            append_csv_row(runs_csv, row, fields)
            print({k: v for k, v in row.items() if k != "val_by_epoch"}, f"[{time.perf_counter() - start:.0f} s]",
                  flush=True)


def upgrade_header(path: Path, fields: list[str], fill: dict[str, str] | None = None) -> None:
    """Rewrite a runs file written before a column existed (the new column ``fill``'s value, else
    empty), so that new rows append under the same header."""
    rows = read_csv_rows(path)
    if rows and list(rows[0]) != fields:
        path.unlink()
        for r in rows:
            append_csv_row(path, {k: r.get(k) or (fill or {}).get(k, "") for k in fields}, fields)


def read_runs(runs_csv: Path, numeric: Sequence[str]) -> pd.DataFrame:
    """The runs so far, ``numeric`` columns as numbers (empty cells NaN)."""
    df = pd.DataFrame(read_csv_rows(runs_csv))
    for c in numeric:
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def done_keys(runs_csv: Path, numeric: Sequence[str], columns: Sequence[str]) -> set[tuple]:
    """The ``columns`` of every run already in the runs file (numbers as ints), to skip those jobs."""
    if not runs_csv.is_file():
        return set()
    df = read_runs(runs_csv, numeric)
    return {tuple(int(v) if c in numeric else v for c, v in zip(columns, row))
            for row in df[list(columns)].itertuples(index=False)}


def write_seed_means(df: pd.DataFrame, by: list[str], columns: list[str], out: Path, name: str) -> list[dict]:
    """Means over seeds of ``columns`` per ``by`` group, with the seed count and the test balanced
    accuracy's standard deviation, written to ``out/name.{csv,json}`` (with the environment) and printed."""
    from defect_nas.core.files import write_csv, write_json
    from defect_nas.measure.runinfo import environment

    g = df.groupby(by)
    table = g[columns].mean().round(2).reset_index()
    table["seeds"] = g.size().values
    table["test_balanced_std"] = g["test_balanced_accuracy"].std().fillna(0).round(2).values
    rows = [{k: None if isinstance(v, float) and v != v else v for k, v in r.items()}  # NaN is not JSON
            for r in table.to_dict("records")]
    write_csv(out / f"{name}.csv", rows)
    write_json(out / f"{name}.json", {"rows": rows, "environment": environment(0)})
    for row in rows:
        print(row)
    return rows
