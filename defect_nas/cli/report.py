"""``report RUN``: report.html (and the trial tables) again from what a run folder holds, for a plain
search (its study, or the committed trials.csv) and for a ``--target-accuracy`` run (its front)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from defect_nas.cli.output import console
from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import writable_folder
from defect_nas.core.runfolder import RunFolder


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="rebuild trials.csv, pareto.csv and report.html from the study "
                                      "(or a --target-accuracy run's report from its front)")
    p.add_argument("run")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> None:
    from defect_nas.nas.rows import load_summary

    run_dir = Path(args.run)
    folder = RunFolder(run_dir)
    summary = load_summary(run_dir)
    if not folder.config.is_file() and "front" in summary:
        writable_folder(run_dir, "run folder")
        _front_report(folder, summary)
    elif folder.config.is_file() and summary.get("task") == "segment":
        from defect_nas.nas.seg_run import rebuild_report

        writable_folder(run_dir, "run folder")
        rebuild_report(run_dir, log=console.print)
    elif folder.config.is_file():
        _search_report(folder, summary)
    else:
        raise DefectNasError(f"{run_dir}: not a search run folder (no config.json, nor the summary.json of a "
                             "--target-accuracy run): give the folder a search wrote")


def _front_report(folder: RunFolder, summary: dict) -> None:
    """A target run's page: the converged front and the chosen point (each budget under budgets/ is an
    ordinary run that ``report`` rebuilds on its own)."""
    from defect_nas.nas.front_report import write_front_report

    write_front_report(folder.report, summary)
    console.print(f"rebuilt {folder.report} from the front of {len(summary['front'])} budget(s)")


def _search_report(folder: RunFolder, summary: dict) -> None:
    from defect_nas.nas.report import write_report
    from defect_nas.nas.rows import read_trials_csv
    from defect_nas.nas.run import write_tables
    from defect_nas.nas.storage import open_storage, sqlite_url

    run_dir = folder.path
    cfg = json.loads(folder.config.read_text())
    url = cfg.get("storage") if cfg.get("storage", "").startswith("postgresql") else sqlite_url(run_dir)
    if url.startswith("sqlite") and not folder.study_db.is_file():
        # a copied or committed run folder: the study is not there, its tables are
        if not folder.trials_csv.is_file():
            raise DefectNasError(f"{run_dir}: neither study.db nor trials.csv to rebuild the report from")
        rows, source = read_trials_csv(folder.trials_csv), "trials.csv"
    else:
        import optuna

        study = optuna.load_study(study_name=cfg.get("study", run_dir.name), storage=open_storage(url))
        rows, source = write_tables(study, run_dir, keep_curves=True), "the study"
    writable_folder(run_dir, "run folder")
    write_report(folder.report, summary or {"run": run_dir.name, "run_dir": str(run_dir)}, rows)
    console.print(f"rebuilt {folder.report} from {len(rows)} trials ({source})")
