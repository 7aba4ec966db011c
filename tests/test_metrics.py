"""Metrics checked against vectors computed by hand."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from defect_nas.core.errors import DefectNasError
from defect_nas.evaluators.metrics import Metrics, compute_metrics, confusion_matrix

NAMES = ["good", "scratch", "dent"]
LABELS = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PREDS = [0, 0, 1, 1, 1, 2, 1, 2, 0, 2]
# confusion (rows = truth): good [2, 2, 0], scratch [0, 2, 1], dent [1, 0, 2]


def test_hand_computed_vector():
    m = compute_metrics(PREDS, LABELS, NAMES, negative_classes={0})
    assert m.confusion == ((2, 2, 0), (0, 2, 1), (1, 0, 2))
    assert m.support == (4, 3, 3)
    assert m.num_samples == 10
    assert m.accuracy == pytest.approx(60.0)
    assert m.per_class_accuracy == pytest.approx((50.0, 200 / 3, 200 / 3))
    assert m.balanced_accuracy == pytest.approx(100 * 11 / 18)
    # F1 = 2TP / (2TP + FP + FN): good 4/7, scratch 4/7, dent 4/6
    assert m.per_class_f1 == pytest.approx((400 / 7, 400 / 7, 200 / 3))
    assert m.macro_f1 == pytest.approx(100 * 38 / 63)
    # defective: 6 images, 5 predicted as some defect (scratch->dent still counts)
    assert m.tpr == pytest.approx(500 / 6)
    # clean: 4 images, 2 predicted clean
    assert m.tnr == pytest.approx(50.0)
    assert m.negative_classes == (0,)


def test_tensor_and_logit_inputs_match_lists():
    ref = compute_metrics(PREDS, LABELS, NAMES)
    t = compute_metrics(torch.tensor(PREDS), torch.tensor(LABELS), NAMES)
    logits = torch.nn.functional.one_hot(torch.tensor(PREDS), 3).float() * 5 - 1
    lg = compute_metrics(logits, np.array(LABELS), NAMES)
    assert t == ref == lg
    assert ref.tpr is None and ref.tnr is None


def test_class_absent_from_labels_but_predicted():
    # class c never in labels, predicted once
    m = compute_metrics([0, 2, 1, 1], [0, 0, 1, 1], ["a", "b", "c"])
    assert m.per_class_accuracy == (50.0, 100.0, None)
    assert m.balanced_accuracy == pytest.approx(75.0)  # mean over present classes only
    assert m.per_class_f1 == pytest.approx((200 / 3, 100.0, 0.0))
    assert m.macro_f1 == pytest.approx((200 / 3 + 100.0 + 0.0) / 3)


def test_class_absent_everywhere_is_left_out():
    m = compute_metrics([0, 2, 1, 1], [0, 0, 1, 1], ["a", "b", "c", "d"])
    assert m.per_class_accuracy[3] is None and m.per_class_f1[3] is None
    assert m.macro_f1 == pytest.approx((200 / 3 + 100.0 + 0.0) / 3)
    assert m.confusion[3] == (0, 0, 0, 0)


def test_rates_undefined_without_images_of_that_kind():
    m = compute_metrics([0, 1], [1, 1], ["good", "bad"], negative_classes=[0])
    assert m.tpr == pytest.approx(50.0)
    assert m.tnr is None


def test_several_negative_classes():
    # classes: 0 good, 1 good-but-dusty, 2 crack; good<->dusty confusion is still "clean"
    m = compute_metrics([1, 0, 2, 0], [0, 1, 2, 2], ["good", "dusty", "crack"], {0, 1})
    assert m.tnr == pytest.approx(100.0)
    assert m.tpr == pytest.approx(50.0)
    assert m.accuracy == pytest.approx(25.0)


def test_to_dict_is_json_friendly():
    m = compute_metrics(PREDS, LABELS, NAMES, negative_classes={0})
    d = json.loads(json.dumps(m.to_dict()))
    assert d["confusion"] == [[2, 2, 0], [0, 2, 1], [1, 0, 2]]
    assert d["per_class_accuracy_by_name"]["good"] == pytest.approx(50.0)
    assert d["negative_classes"] == [0]
    assert isinstance(m, Metrics)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.accuracy = 1.0  # frozen


def test_confusion_matrix_direct():
    cm = confusion_matrix([1, 1, 0], [0, 1, 0], 2)
    assert cm.tolist() == [[1, 1], [0, 1]]


@pytest.mark.parametrize(
    "preds, labels, names, neg, msg",
    [
        ([0, 1], [0], ["a", "b"], None, "length"),
        ([0, 3], [0, 1], ["a", "b"], None, "outside"),
        ([0, -1], [0, 1], ["a", "b"], None, "outside"),
        ([], [], ["a", "b"], None, "no samples"),
        ([0], [0], [], None, "empty"),
        ([0], [0], ["a", "a"], None, "duplicates"),
        ([0, 1], [0, 1], ["a", "b"], {0, 1}, "every class"),
        ([0, 1], [0, 1], ["a", "b"], {5}, "outside"),
        ([0.5, 1], [0, 1], ["a", "b"], None, "integer"),
    ],
)
def test_user_errors(preds, labels, names, neg, msg):
    with pytest.raises(DefectNasError, match=msg):
        compute_metrics(preds, labels, names, negative_classes=neg)
