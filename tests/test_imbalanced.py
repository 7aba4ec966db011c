"""Imbalanced data (a defect-free class of 70% is common in inspection): candidates are chosen and
reported on balanced accuracy, where "always say no defect" scores 1/K, not 70%."""

from __future__ import annotations

import json

import numpy as np
import torch
from datagen import learnable_dataset
from PIL import Image
from test_search import TINY, cli

from defect_nas.core.spec import ArchSpec, Basic, Conv, Head
from defect_nas.data import make_split
from defect_nas.data.dataset import build_dataset
from defect_nas.data.imageio import pixel_hash
from defect_nas.evaluators.run import train_module
from defect_nas.evaluators.scoring import selection_metric, train_data
from defect_nas.evaluators.trainer import TrainConfig, train
from defect_nas.search_spaces.build import build

SPEC = ArchSpec(1, 32, 3, (Conv(8, 3, 2),), ((Basic(16, 3, 2),),), Head())


def imbalanced(per_class=(70, 15, 15)):
    """Stripes of three periods; class 0 ('ok') holds 70% of the images."""
    full = learnable_dataset(classes=3, per_class=max(per_class), size=32)
    keep = torch.cat([torch.nonzero(full.labels == c)[:n, 0] for c, n in enumerate(per_class)])
    pixels = np.ascontiguousarray(full.images[keep].numpy())
    labels = full.labels[keep].tolist()
    return build_dataset(name="imb", root=full.root, pixels=pixels, labels=labels,
                         class_names=["ok", "defect_a", "defect_b"], paths=[f"{i}.png" for i in range(len(keep))],
                         content_ids=[pixel_hash(p) for p in pixels], layout="synthetic")


def test_the_metric_follows_the_class_balance():
    assert selection_metric(imbalanced()) == "balanced_accuracy"
    assert selection_metric(learnable_dataset(classes=3, per_class=20, size=16)) == "accuracy"


def test_training_selects_and_reports_on_balanced_accuracy():
    ds = imbalanced()
    split = make_split(ds, seed=0)
    td = train_data(ds, split)
    torch.manual_seed(0)
    result = train(build(SPEC), td, TrainConfig(epochs=6, batch_size=16, seed=0))
    best = result.history[result.best_epoch - 1]
    assert result.val_accuracy == best["val_balanced_accuracy"]
    assert max(h["val_balanced_accuracy"] for h in result.history) == result.val_accuracy  # chosen on it
    torch.manual_seed(0)
    s = train_module(build(SPEC), ds, split, TrainConfig(epochs=2, batch_size=16, seed=0))
    assert s["metric"] == "balanced_accuracy" and s["test_accuracy"] == s["test_metrics"]["balanced_accuracy"]


def test_a_search_on_imbalanced_data_reports_its_winner_in_balanced_accuracy(tmp_path):
    ds = imbalanced((210, 45, 45))  # enough batches to learn in a few epochs: a winner at chance is not exported
    root = tmp_path / "imb"
    for i, (img, label) in enumerate(zip(ds.images, ds.labels)):
        folder = root / ds.class_names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(folder / f"{i}.png")
    tiny = [a for a in TINY if a != "prototypes"]
    tiny[tiny.index("--baselines") + 1:tiny.index("--baselines") + 1] = ["none"]
    for flag in ("--epochs", "--final-epochs"):  # batch-norm statistics need ~7 epochs of this data to leave chance
        tiny[tiny.index(flag) + 1] = "8"
    cli("search", "--dataset", str(root), *tiny, "--trials", "3", "--head-pool", "gmp",
        "--results", str(tmp_path / "r"))
    run = tmp_path / "r" / "imb-2m"
    summary = json.loads((run / "summary.json").read_text())
    winner = summary["winner"]
    assert winner["metric"] == "balanced_accuracy"
    assert summary["recipe"]["imbalance"] == "sampler"  # class-balanced batches by default (nas.recipe)
    assert summary["recipe"]["head_pool"] == "gmp"  # --head-pool reaches every candidate, the winner included
    assert json.loads((run / "winner" / "arch.json").read_text())["head"]["pool"] == "gmp"
    assert "balanced accuracy" in (run / "report.html").read_text()
    assert "balanced accuracy" in (run / "winner" / "MODEL_CARD.md").read_text()
