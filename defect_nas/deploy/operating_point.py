"""Choose the operating point on the validation split and measure what it costs on the test split.

The threshold meets ``--max-escape-rate`` on validation (default 0: every validation defect caught);
the test split then gives the escape rate and the false-reject rate it really has, each with a 95%
Wilson interval (scipy), since a rate of 0 out of 300 is not a rate of 0. See ``deploy.decision`` for
the two modes and what an escape and a false reject are in each."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from defect_nas.core.files import write_text_atomic
from defect_nas.data.preprocess import RecordedTest
from defect_nas.deploy.decision import (
    FILE,
    GOOD_VS_DEFECT,
    ONE_VS_REST,
    OperatingPoint,
    check_rate,
    thresholds_for,
)

CONFIDENCE = 0.95


def wilson(k: int, n: int) -> list[float] | None:
    """The 95% Wilson score interval of k successes in n trials, in percent (None when n is 0)."""
    if n == 0:
        return None
    ci = binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return [100 * float(ci.low), 100 * float(ci.high)]


def _scores(labels: Sequence[str], good: Sequence[str], prob: np.ndarray, truth: np.ndarray) -> dict:
    """Per threshold key, the probabilities of the parts that must be caught ("defect") and of the rest."""
    truth = np.asarray(truth)
    if good:
        g = [labels.index(c) for c in good]
        is_good = np.isin(truth, g)
        p_good = prob[:, g].sum(1)
        return {"good": {"defect": p_good[~is_good].tolist(), "pass": p_good[is_good].tolist()}}
    return {c: {"defect": prob[truth == k, k].tolist(), "pass": prob[truth != k, k].tolist()}
            for k, c in enumerate(labels)}


def rates(op: OperatingPoint, prob: np.ndarray, truth: np.ndarray) -> dict:
    """Escapes and false rejects of ``op`` on labelled probabilities, as counts, percent and interval."""
    out = {}
    for key, s in _scores(op.labels, op.good, prob, truth).items():
        t = op.thresholds[key]
        d, p = np.asarray(s["defect"]), np.asarray(s["pass"])
        if op.mode == GOOD_VS_DEFECT:  # OK when P(good) > t
            esc, rej = int((d > t).sum()), int((p <= t).sum())
        else:  # class flagged when P(class) >= t
            esc, rej = int((d < t).sum()), int((p >= t).sum())
        out[key] = {"threshold": t, "defects": len(d), "escapes": esc,
                    "escape_rate": 100 * esc / len(d) if len(d) else None, "escape_ci": wilson(esc, len(d)),
                    "passes": len(p), "false_rejects": rej,
                    "false_reject_rate": 100 * rej / len(p) if len(p) else None, "false_reject_ci": wilson(rej, len(p))}
    return out


def choose(labels: Sequence[str], good: Sequence[str], val_prob: np.ndarray, val_truth: np.ndarray,
           max_escape_rate: float = 0.0) -> OperatingPoint:
    """The operating point chosen on validation probabilities (``good``: the defect-free classes, empty
    for one-vs-rest), with its validation rates in ``report``."""
    check_rate(max_escape_rate, "--max-escape-rate")
    mode = GOOD_VS_DEFECT if good else ONE_VS_REST
    scores = _scores(labels, good, val_prob, val_truth)
    op = OperatingPoint(mode, tuple(labels), tuple(good), thresholds_for(mode, scores, max_escape_rate),
                        float(max_escape_rate), scores)
    return OperatingPoint(op.mode, op.labels, op.good, op.thresholds, op.max_escape_rate, scores,
                          {"validation": rates(op, val_prob, val_truth)})


def with_test(op: OperatingPoint, test_prob: np.ndarray, test_truth: np.ndarray,
              files: Sequence[str] | None = None) -> OperatingPoint:
    """``op`` with its test-split rates (and the escaped test files, to look at) added to ``report``."""
    report = {**op.report, "test": rates(op, test_prob, test_truth),
              "test_scores": _scores(op.labels, op.good, test_prob, test_truth)}  # the report's ROC
    if files is not None:
        decisions = op.decide(test_prob)
        truth = np.asarray(test_truth)
        good = [op.labels.index(g) for g in op.good]
        report["test_escaped_files"] = [f for f, d, y in zip(files, decisions, truth)
                                        if d == "OK" and int(y) not in good]
    return OperatingPoint(op.mode, op.labels, op.good, op.thresholds, op.max_escape_rate, op.validation_scores,
                          report)


def save(op: OperatingPoint, model_dir: Path) -> Path:
    return write_text_atomic(Path(model_dir) / FILE, op.to_json())


def card_section(op: OperatingPoint) -> str:
    """The model card's "Operating point" section: the threshold and what it costs on test."""
    test = op.report.get("test") or {}
    lines = ["## Operating point (the OK/NG decision)", ""]
    if op.mode == GOOD_VS_DEFECT:
        lines.append(f"A part is **OK** when P({' + '.join(op.good)}) > **{op.thresholds['good']:.4g}**, else "
                     "**NG**. An escape is a defective part decided OK; a false reject is a good part decided NG.")
    else:
        lines.append("The data has no defect-free class, so each class is judged one-vs-rest: class c is flagged "
                     "when P(c) >= its threshold, and a part is NG when any class is flagged. Per class, an escape is "
                     "a part of class c not flagged as c; a false reject is a part of another class flagged as c.")
    lines += ["", f"Chosen on the validation split for an escape rate of at most {100 * op.max_escape_rate:g}% "
                  "(`defect-nas operating-point RUN --max-escape-rate R` chooses another; `defect-nas predict "
                  "--threshold T` overrides it). On the test split, never used to choose, with 95% Wilson intervals:",
              "", "| threshold on | threshold | escape rate | false-reject rate |", "| --- | --- | --- | --- |"]
    for key, r in test.items():
        escape, reject = format_rate(r, "escape"), format_rate(r, "false_reject")
        lines.append(f"| P({key}) | {r['threshold']:.4g} | {escape} | {reject} |")
    return "\n".join(lines) + "\n"


def format_rate(r: dict, kind: str) -> str:
    """One measured rate as the card, the report and the terminal show it: "1.67% (1/60; 0.29-8.86%)"."""
    plural = "escapes" if kind == "escape" else "false_rejects"
    n = r["defects"] if kind == "escape" else r["passes"]
    if not n:
        return "n/a (no such part)"
    lo, hi = r[f"{kind}_ci"]
    return f"{r[f'{kind}_rate']:.2f}% ({r[plural]}/{n}; {lo:.2f}-{hi:.2f}%)"


def with_card_section(card: str, op: OperatingPoint) -> str:
    """The model card with its operating-point section written (or rewritten) before "## Cost"."""
    head = "## Operating point"
    if head in card:
        start = card.index(head)
        nxt = card.find("\n## ", start + 1)
        card = card[:start] + (card[nxt + 1:] if nxt >= 0 else "")
    at = card.find("## Cost")
    section = card_section(op) + "\n"
    return card[:at] + section + card[at:] if at >= 0 else card.rstrip("\n") + "\n\n" + section


def measure(model_dir: Path, val: RecordedTest, test: RecordedTest, max_escape_rate: float = 0.0,
            write: bool = True) -> OperatingPoint:
    """Choose the folder's operating point on ``val`` and measure it on ``test``, running the exported
    model as ``predict`` does (the stand-alone predictor); written to the folder as operating_point.json
    and into its model card. ``good``: the dataset's defect-free classes (none: one-vs-rest)."""
    from defect_nas.deploy.predictor import Predictor

    predictor = Predictor(model_dir, operating_point=None)
    good = [val.dataset.class_names[i] for i in val.dataset.negative_classes]

    def probs(rec: RecordedTest) -> np.ndarray:
        x = rec.x8.numpy()
        return np.concatenate([predictor.probabilities(x[i:i + 64]) for i in range(0, len(x), 64)])

    op = choose(predictor.labels, good, probs(val), val.truth.numpy(), max_escape_rate)
    op = with_test(op, probs(test), test.truth.numpy(), test.files)
    if write:
        save(op, model_dir)
        card = Path(model_dir) / "MODEL_CARD.md"
        if card.is_file():
            write_text_atomic(card, with_card_section(card.read_text(), op))
    return op
