"""Classification metrics for defect datasets, in one frozen, JSON-friendly record.

Defect datasets are imbalanced (many clean images, few of each defect), so overall accuracy
alone hides a model that ignores rare classes: we also report balanced accuracy, macro-F1,
per-class accuracy (recall) and, when some classes mean "no defect", TPR/TNR.

The counts and per-class recall / F1 come from scikit-learn (``confusion_matrix``,
``precision_recall_fscore_support`` with ``zero_division=nan``); this module fixes the conventions
below, validates the inputs with one-line errors and adds the inspection rates.

Conventions (all accuracies and rates are percentages in [0, 100]):

* ``confusion[i][j]`` counts images whose label is class ``i`` and prediction is class ``j``
  (rows = truth, columns = prediction).
* Per-class accuracy of class ``c`` is its recall ``confusion[c][c] / support[c]``. A class absent
  from the labels (support 0) has no defined recall: its entry is ``None`` and it is left out of
  balanced accuracy, which is the mean recall over the classes present in the labels (as in
  scikit-learn's ``balanced_accuracy_score``).
* Per-class F1 is ``2 TP / (2 TP + FP + FN)``. A class absent from both labels and predictions
  has no defined F1 (``None``) and is left out of macro-F1; a class absent from the labels but
  predicted gets F1 = 0 (every prediction of it is wrong) and counts in macro-F1. Macro-F1 is
  thus the mean over classes seen in the labels or the predictions (scikit-learn's default).
* With ``negative_classes`` (ids of the "no defect" classes, e.g. ``{0}`` for "good"):
  TPR = defective images (label not negative) predicted as *any* defective class, in percent of
  defective images; TNR = clean images (label negative) predicted as *any* clean class, in
  percent of clean images. Confusing one defect type for another still counts as detected. A
  rate whose denominator is empty is ``None``; both are ``None`` without ``negative_classes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import precision_recall_fscore_support

from defect_nas.core.errors import DefectNasError

__all__ = ["Metrics", "compute_metrics", "confusion_matrix"]

ArrayLike = torch.Tensor | np.ndarray | Sequence[int]


@dataclass(frozen=True)
class Metrics:
    """Evaluation of one model on one labelled set; percentages, ``None`` where undefined."""

    class_names: tuple[str, ...]
    num_samples: int
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    per_class_accuracy: tuple[float | None, ...]
    per_class_f1: tuple[float | None, ...]
    support: tuple[int, ...]
    confusion: tuple[tuple[int, ...], ...]
    negative_classes: tuple[int, ...] | None = None
    tpr: float | None = None
    tnr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of lists/ints/floats/None, ready for ``json.dumps`` (results files, CLI)."""
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["per_class_accuracy"] = list(self.per_class_accuracy)
        d["per_class_f1"] = list(self.per_class_f1)
        d["support"] = list(self.support)
        d["confusion"] = [list(row) for row in self.confusion]
        d["negative_classes"] = (
            None if self.negative_classes is None else list(self.negative_classes)
        )
        d["per_class_accuracy_by_name"] = dict(zip(self.class_names, self.per_class_accuracy))
        return d


def _as_class_ids(values: ArrayLike, what: str) -> np.ndarray:
    """1-D int64 array of class ids; 2-D tensors/arrays are treated as logits and argmax'ed."""
    if isinstance(values, torch.Tensor):
        arr = values.detach().cpu()
        if arr.ndim == 2:
            arr = arr.argmax(dim=1)
        arr = arr.numpy()
    else:
        arr = np.asarray(values)
        if arr.ndim == 2:
            arr = arr.argmax(axis=1)
    if arr.ndim != 1:
        raise DefectNasError(f"{what} must be 1-D class ids or 2-D logits, got shape {arr.shape}")
    if arr.size and not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)
    ):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(arr == np.round(arr)):
            raise DefectNasError(f"{what} must hold integer class ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def confusion_matrix(predictions: ArrayLike, labels: ArrayLike, num_classes: int) -> np.ndarray:
    """``num_classes x num_classes`` int64 counts, rows = label, columns = prediction."""
    pred = _as_class_ids(predictions, "predictions")
    true = _as_class_ids(labels, "labels")
    if pred.shape != true.shape:
        raise DefectNasError(
            f"predictions and labels differ in length: {pred.shape[0]} vs {true.shape[0]}"
        )
    for name, arr in (("predictions", pred), ("labels", true)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            bad = int(arr[(arr < 0) | (arr >= num_classes)][0])
            raise DefectNasError(
                f"{name} hold class id {bad}, outside 0..{num_classes - 1} "
                f"({num_classes} class names given)"
            )
    if not true.size:  # scikit-learn refuses empty inputs; the caller names the problem
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    return sk_confusion(true, pred, labels=np.arange(num_classes)).astype(np.int64)


def _pct(num: float, den: float) -> float | None:
    return None if den == 0 else 100.0 * float(num) / float(den)


def compute_metrics(
    predictions: ArrayLike,
    labels: ArrayLike,
    class_names: Sequence[str],
    negative_classes: Iterable[int] | None = None,
) -> Metrics:
    """All metrics for ``predictions`` vs ``labels``; see the module docstring for definitions.

    ``predictions`` may be class ids or 2-D logits/probabilities (argmax'ed). ``class_names``
    fixes the number of classes, so classes absent from this set still get a row.
    """
    names = tuple(str(n) for n in class_names)
    if not names:
        raise DefectNasError("class_names is empty: at least one class is needed")
    if len(set(names)) != len(names):
        raise DefectNasError(f"class_names has duplicates: {list(names)}")
    k = len(names)
    cm = confusion_matrix(predictions, labels, k)
    n = int(cm.sum())
    if n == 0:
        raise DefectNasError("no samples: predictions and labels are empty")

    support = cm.sum(axis=1)
    tp = np.diag(cm)
    true, pred = _as_class_ids(labels, "labels"), _as_class_ids(predictions, "predictions")
    _, sk_recall, sk_f1, _ = precision_recall_fscore_support(  # undefined (0/0) -> nan -> None
        true, pred, labels=np.arange(k), average=None, zero_division=np.nan)
    recall = [None if np.isnan(r) else 100.0 * float(r) for r in sk_recall]
    f1 = [None if np.isnan(f) else 100.0 * float(f) for f in sk_f1]

    present = [r for r in recall if r is not None]
    seen_f1 = [f for f in f1 if f is not None]
    accuracy = 100.0 * float(tp.sum()) / n
    balanced = float(np.mean(present))  # n > 0 so at least one class is present
    macro_f1 = float(np.mean(seen_f1))

    neg: tuple[int, ...] | None = None
    tpr = tnr = None
    if negative_classes is not None:
        neg = tuple(sorted({int(c) for c in negative_classes}))
        if not neg:
            raise DefectNasError("negative_classes is empty: give the 'no defect' class ids")
        out = [c for c in neg if not 0 <= c < k]
        if out:
            raise DefectNasError(f"negative_classes {out} outside 0..{k - 1}")
        if len(neg) == k:
            raise DefectNasError("negative_classes covers every class: no defect class is left")
        is_neg = np.zeros(k, dtype=bool)
        is_neg[list(neg)] = True
        pos_rows = cm[~is_neg]
        neg_rows = cm[is_neg]
        tpr = _pct(pos_rows[:, ~is_neg].sum(), pos_rows.sum())
        tnr = _pct(neg_rows[:, is_neg].sum(), neg_rows.sum())

    return Metrics(
        class_names=names,
        num_samples=n,
        accuracy=accuracy,
        balanced_accuracy=balanced,
        macro_f1=macro_f1,
        per_class_accuracy=tuple(recall),
        per_class_f1=tuple(f1),
        support=tuple(int(s) for s in support),
        confusion=tuple(tuple(int(v) for v in row) for row in cm),
        negative_classes=neg,
        tpr=tpr,
        tnr=tnr,
    )
