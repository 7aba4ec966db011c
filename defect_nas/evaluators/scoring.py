"""One way from a split to training tensors, and one way to score a model on the test part.

Candidates, finalists, baselines and the teacher all go through these two functions, so their
numbers mean the same thing: on patch datasets (DAGM: 9 overlapping test patches per image) the
test accuracy is the image verdict (majority texture; defective if any patch is), as Kim et al.
score it, with the patch accuracy kept beside it.
"""

from __future__ import annotations

import math

import torch

from defect_nas.data import Dataset, Split, dagm_image_labels, dagm_image_predictions
from defect_nas.evaluators.metrics import Metrics, compute_metrics
from defect_nas.evaluators.trainer import TrainData, evaluate, predict_logits

IMBALANCE_RATIO = 1.5  # largest class / smallest class from which accuracy is balanced accuracy


def selection_metric(dataset: Dataset) -> str:
    """``accuracy`` on balanced data, ``balanced_accuracy`` (mean per-class recall) when the largest
    class has 1.5x the images of the smallest: with 71% defect-free images, a model that always
    says "no defect" scores 71% accuracy but 1/K balanced accuracy, so the search can tell
    candidates apart. The validation choices and every reported "accuracy" use it."""
    counts = [c for c in dataset.class_counts().values() if c > 0]
    return "balanced_accuracy" if counts and max(counts) >= IMBALANCE_RATIO * min(counts) else "accuracy"


def val_counts(dataset: Dataset, split: Split) -> list[int]:
    """Images per class in the validation part, the classes with none left out."""
    return [c for c in torch.bincount(dataset.labels[split.val], minlength=dataset.num_classes).tolist() if c > 0]


def chance_score(dataset: Dataset, counts: list[int]) -> float:
    """The validation score (the run's metric, percent) of a model that ignores its input: 1/K
    balanced accuracy, or the largest class's share of plain accuracy."""
    if selection_metric(dataset) == "balanced_accuracy":
        return 100.0 / len(counts)
    return 100.0 * max(counts) / sum(counts)


def learned(score: float | None, dataset: Dataset, split: Split) -> bool:
    """Above chance by more than luck on this validation set: 3 standard errors of a guess that
    ignores the input (at least 2 points). A guess's per-class recall has a binomial error of at
    most 0.5 / sqrt(n_k); balanced accuracy averages K of them. NEU's 240 validation images: 8.7
    points above 16.7%; a 4-class line set with 15 defects per class: 17 points above 25%."""
    counts = val_counts(dataset, split)
    chance = chance_score(dataset, counts)
    if selection_metric(dataset) == "balanced_accuracy":
        se = math.sqrt(sum(0.25 / n for n in counts)) / len(counts)
    else:
        p = chance / 100
        se = math.sqrt(p * (1 - p) / sum(counts))
    return score is not None and score > chance + max(2.0, 300 * se)


def train_data(dataset: Dataset, split: Split, teacher_logits: torch.Tensor | None = None) -> TrainData:
    """The split's train and validation parts as tensors (with the negative classes, for TPR/TNR,
    and the selection metric)."""
    return TrainData(
        dataset.images[split.train], dataset.labels[split.train], dataset.images[split.val],
        dataset.labels[split.val], dataset.class_names, teacher_logits, dataset.negative_classes,
        selection_metric(dataset),
    )


def score_test(model: torch.nn.Module, dataset: Dataset, split: Split, input_size: int) -> tuple[Metrics, dict]:
    """The test metrics that count, and the summary fields that report them (fp32, as deployed)."""
    patches = evaluate(model, dataset.images[split.test], dataset.labels[split.test], dataset.class_names,
                       input_size=input_size, negative_classes=dataset.negative_classes)
    images = _image_vote(model, dataset, split, input_size)
    metric = selection_metric(dataset)
    if images is None:
        return patches, {"test_accuracy": getattr(patches, metric), "metric": metric,
                         "test_metrics": patches.to_dict()}
    return images, {"test_accuracy": getattr(images, metric), "metric": metric, "test_metrics": patches.to_dict(),
                    "test_image_metrics": images.to_dict(), "test_patch_accuracy": getattr(patches, metric)}


def _image_vote(model: torch.nn.Module, dataset: Dataset, split: Split, size: int) -> Metrics | None:
    if dataset.groups is None or not dataset.layout.startswith("dagm"):
        return None
    idx = split.test
    preds = predict_logits(model, dataset.images[idx], input_size=size, precision="fp32").argmax(1)
    groups = dataset.groups[idx]
    _, image_preds = dagm_image_predictions(preds, groups)
    _, image_labels = dagm_image_labels(dataset.labels[idx], groups)
    return compute_metrics(image_preds, image_labels, dataset.class_names, dataset.negative_classes or None)
