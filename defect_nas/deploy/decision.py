"""The line's OK/NG decision from class probabilities, at the operating point stored with the model.

numpy only, so the stand-alone predictor can apply it. Two modes:

- ``good-vs-defect`` (the data has a defect-free class: ok, good, normal, ...): a part is **OK** when
  the probability of the good class(es) is above ``threshold``, else **NG**. An *escape* is a
  defective part decided OK; a *false reject* is a good part decided NG.
- ``one-vs-rest`` (every class is a defect, as on NEU): class ``c`` is flagged when its probability is
  at least ``thresholds[c]``; a part is NG when some class is flagged, else OK. Per class, an escape
  is a part of class ``c`` not flagged as ``c``; a false reject is a part of another class flagged as ``c``.

The validation scores are stored too, so another escape rate can be chosen without the data
(``predict --max-escape-rate``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from defect_nas.core.errors import DefectNasError

FILE = "operating_point.json"
GOOD_VS_DEFECT, ONE_VS_REST = "good-vs-defect", "one-vs-rest"


def catch_threshold(defect_scores: np.ndarray, pass_scores: np.ndarray, max_escape_rate: float) -> float:
    """The threshold on a score where higher means defect (flag when ``score >= t``) that lets at most
    ``max_escape_rate`` of ``defect_scores`` escape, placed midway to the next pass score below it so a
    small shift of the scores (another runtime, int8) does not move a part across it."""
    d = np.sort(np.asarray(defect_scores, dtype=np.float64))
    if d.size == 0:
        raise DefectNasError("no defective image in the validation split: the escape rate cannot be set")
    allowed = int(math.floor(max_escape_rate * d.size + 1e-9))
    if allowed >= d.size:
        return math.inf  # every defect may escape: flag nothing
    lowest_caught = d[allowed]  # the `allowed` lowest escape; this one and all above must be caught
    below = np.asarray(pass_scores, dtype=np.float64)
    below = below[below < lowest_caught]
    floor = float(below.max()) if below.size else min(0.0, float(lowest_caught) - 1.0)
    return (float(lowest_caught) + floor) / 2


@dataclass(frozen=True)
class OperatingPoint:
    """What ``operating_point.json`` holds: the mode, the threshold(s), the escape rate they were
    chosen for, the validation scores they were chosen on, and the measured rates (``report``)."""

    mode: str
    labels: tuple[str, ...]
    good: tuple[str, ...]  # good-vs-defect: the defect-free classes
    thresholds: dict[str, float]  # good-vs-defect: {"good": t on P(good)}; one-vs-rest: {class: t on P(class)}
    max_escape_rate: float
    validation_scores: dict[str, dict[str, list[float]]]  # per threshold key: {"defect": [p...], "pass": [p...]}
    report: dict = field(default_factory=dict)  # rates on validation and test, with intervals

    def with_escape_rate(self, max_escape_rate: float) -> OperatingPoint:
        """The same model at another escape rate, chosen on the stored validation scores."""
        check_rate(max_escape_rate, "--max-escape-rate")
        return OperatingPoint(self.mode, self.labels, self.good,
                              thresholds_for(self.mode, self.validation_scores, max_escape_rate), max_escape_rate,
                              self.validation_scores, {})

    def with_threshold(self, threshold: float) -> OperatingPoint:
        """The same model at a threshold the user chose (every class's in one-vs-rest mode)."""
        check_rate(threshold, "--threshold")
        return OperatingPoint(self.mode, self.labels, self.good, dict.fromkeys(self.thresholds, threshold),
                              float("nan"), self.validation_scores, {})

    def decide(self, probabilities: np.ndarray) -> list[str]:
        """"OK" or "NG" for each row of class probabilities [N, classes]."""
        p = np.asarray(probabilities, dtype=np.float64)
        if self.mode == GOOD_VS_DEFECT:
            good = p[:, [self.labels.index(g) for g in self.good]].sum(1)
            return ["OK" if g > self.thresholds["good"] else "NG" for g in good]
        flagged = np.zeros(len(p), dtype=bool)
        for name, t in self.thresholds.items():
            flagged |= p[:, self.labels.index(name)] >= t
        return ["NG" if f else "OK" for f in flagged]

    def to_json(self) -> str:
        return json.dumps({"mode": self.mode, "labels": list(self.labels), "good": list(self.good),
                           "thresholds": self.thresholds, "max_escape_rate": self.max_escape_rate,
                           "report": self.report, "validation_scores": self.validation_scores}, indent=1) + "\n"


def thresholds_for(mode: str, scores: dict[str, dict[str, list[float]]], max_escape_rate: float) -> dict[str, float]:
    """Each threshold of ``mode`` from validation probabilities: ``scores[key]["defect"]`` are those of
    the parts that must be caught, ``["pass"]`` of the others (P(good) in good-vs-defect mode, where a
    low value means defect, so the scores are negated for ``catch_threshold``)."""
    sign = -1.0 if mode == GOOD_VS_DEFECT else 1.0
    return {key: sign * catch_threshold(sign * np.asarray(s["defect"], dtype=np.float64),
                                        sign * np.asarray(s["pass"], dtype=np.float64), max_escape_rate)
            for key, s in scores.items()}


def check_rate(value: float, flag: str) -> None:
    """A rate or threshold is a number in 0..1: anything else is one line."""
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise DefectNasError(f"{flag} {value}: must be a number from 0 to 1")


def load_operating_point(folder: str | Path, labels: tuple[str, ...]) -> OperatingPoint | None:
    """The folder's stored operating point, or None when it was exported without one."""
    path = Path(folder) / FILE
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        op = OperatingPoint(d["mode"], tuple(d["labels"]), tuple(d["good"]),
                            {k: float(v) for k, v in d["thresholds"].items()}, float(d["max_escape_rate"]),
                            d["validation_scores"], d.get("report") or {})
    except (ValueError, KeyError, TypeError):
        raise DefectNasError(f"{path}: not an operating point; write it again with "
                             "`defect-nas operating-point RUN`") from None
    if op.labels != tuple(labels) or op.mode not in (GOOD_VS_DEFECT, ONE_VS_REST):
        raise DefectNasError(f"{path}: made for other classes than labels.json; write it again with "
                             "`defect-nas operating-point RUN`")
    return op
