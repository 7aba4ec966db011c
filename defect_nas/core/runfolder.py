"""The one place that knows a run folder's layout.

Why: the names (``config.json``, ``split.json``, ``winner/`` ...) were spelled as literals in six
modules across three layers; search writes them, and ``report``, ``export``, ``explain``, ``predict``
checks and the int8 calibration read them. A run folder holds::

    config.json       the SearchConfig (or train config) that made it, storage URL without password
    split.json        the recorded train/val/test split (indices, fingerprint, seed)
    environment.json  versions, machine, seed
    summary.json      the result (winner, promotion, timeline, recipe)
    trials.csv        one row per trial; pareto.csv its front; report.html the page
    learning_curves.csv, latency.json, study.db (SQLite storage), trials/N.safetensors
    winner/           the exported model folder (deploy.model.load_model reads it)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from defect_nas.core.errors import DefectNasError

__all__ = ["RunFolder"]


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run folder; reading helpers that fail with a one-line error."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def split(self) -> Path:
        return self.path / "split.json"

    @property
    def environment(self) -> Path:
        return self.path / "environment.json"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def trials_csv(self) -> Path:
        return self.path / "trials.csv"

    @property
    def pareto_csv(self) -> Path:
        return self.path / "pareto.csv"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    @property
    def curves(self) -> Path:
        return self.path / "learning_curves.csv"

    @property
    def latency_cache(self) -> Path:
        return self.path / "latency.json"

    @property
    def study_db(self) -> Path:
        return self.path / "study.db"

    @property
    def winner(self) -> Path:
        return self.path / "winner"

    @property
    def lock(self) -> Path:
        return self.path / ".lock"

    @property
    def ask_lock(self) -> Path:
        """Held by a local worker from counting the trials until its next trial exists (nas.workers)."""
        return self.path / ".ask.lock"

    @property
    def teacher_lock(self) -> Path:
        """Held by the worker that fine-tunes the recipe's transfer teacher; the others wait, then load it."""
        return self.path / ".teacher.lock"

    def trial_weights(self, number: int) -> Path:
        """Weights a trial saved (rung 1 and 2 survivors; pruned trials have none)."""
        return self.path / "trials" / f"{number}.safetensors"

    def has_split(self) -> bool:
        """Config and split recorded: the run's data and test part can be loaded again."""
        return self.config.is_file() and self.split.is_file()

    def split_source(self) -> Path:
        """The folder whose config.json and split.json hold this run's data: the run itself, or for a
        ``--target-accuracy`` run (which has none at its top) the chosen budget's folder."""
        if self.has_split() or not self.summary.is_file():
            return self.path
        return self.path / ((_read_json(self.summary).get("winner") or {}).get("run") or "")

    def read_config(self) -> dict:
        return _read_json(self.config)

    def read_split(self) -> dict:
        """The recorded split record, or {} for a folder without one."""
        return _read_json(self.split) if self.split.is_file() else {}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DefectNasError(f"{path}: missing; give a run folder written by defect-nas search or train") from None
    except (OSError, json.JSONDecodeError) as e:
        raise DefectNasError(f"{path}: unreadable ({e.__class__.__name__}); the run folder is damaged") from None
