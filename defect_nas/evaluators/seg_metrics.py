"""Segmentation scores from one confusion matrix (scikit-learn's): per-class IoU, mIoU, pixel accuracy,
and the image-level defect decision derived from the masks (for Huang et al.'s image-level accuracy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import confusion_matrix


def confusion(predicted: np.ndarray, target: np.ndarray, classes: int) -> np.ndarray:
    """[classes, classes] pixel counts, rows = true class (any shapes; flattened)."""
    return confusion_matrix(np.asarray(target).ravel(), np.asarray(predicted).ravel(), labels=list(range(classes)))


@dataclass(frozen=True)
class SegScores:
    iou: tuple[float, ...]  # percent per class, background first; nan for a class in neither map
    miou: float  # mean over the classes present, background included (the published UNet's 80.6%)
    miou_defects: float  # the same without the background class
    pixel_accuracy: float

    def as_dict(self, class_names: tuple[str, ...]) -> dict:
        """JSON-ready: a class in neither map (a few images scored by ``predict --truth``) is null, not NaN,
        which strict JSON readers refuse."""
        def num(v: float) -> float | None:
            return None if np.isnan(v) else v

        return {"miou": num(self.miou), "miou_defects": num(self.miou_defects), "pixel_accuracy": self.pixel_accuracy,
                "iou": {n: num(v) for n, v in zip(class_names, self.iou)}}


def scores(cm: np.ndarray) -> SegScores:
    """IoU = TP / (TP + FP + FN) per class from a confusion matrix; classes absent from both the truth and
    the prediction do not count in the means."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, 100 * tp / union, np.nan)
    present = iou[~np.isnan(iou)]
    defects = iou[1:][~np.isnan(iou[1:])]
    return SegScores(tuple(float(v) for v in iou), float(present.mean()) if len(present) else float("nan"),
                     float(defects.mean()) if len(defects) else float("nan"),
                     float(100 * tp.sum() / max(1.0, cm.sum())))


def image_defect_accuracy(predicted: np.ndarray, target: np.ndarray, min_pixels: int = 1) -> float:
    """Percent of images whose "has a defect" (at least ``min_pixels`` non-background pixels) is the same in
    the predicted and the true mask: the image-level decision a line makes from a segmenter."""
    n = predicted.shape[0]
    pred = (predicted.reshape(n, -1) > 0).sum(1) >= min_pixels
    true = (target.reshape(n, -1) > 0).sum(1) >= min_pixels
    return float(100 * (pred == true).mean())
