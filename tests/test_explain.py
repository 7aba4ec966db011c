"""Explanations a user can trust: Grad-CAM points where the model looks, and the deletion test
tells a map that found the evidence from one that did not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from defect_nas.cli.main import main
from defect_nas.core.spec import ArchSpec, Basic, Conv, Head
from defect_nas.data import make_split
from defect_nas.data.dataset import build_dataset
from defect_nas.data.imageio import pixel_hash
from defect_nas.deploy.model import save_model
from defect_nas.evaluators.trainer import TrainConfig, TrainData, train
from defect_nas.inspection.explain import area_under, attribute, deletion_curves, gradcam
from defect_nas.search_spaces.build import build

SPEC = ArchSpec(1, 32, 2, (Conv(8, 3, 1),), ((Basic(16, 3, 2),), (Basic(16, 3, 2),)), Head())


class LeftHalf(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(x)
        mask[..., : x.shape[-1] // 2] = 1
        return x * mask


class LeftEyed(nn.Module):
    """A net whose conv features see, and keep, only the left half of the image."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(LeftHalf(), nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), LeftHalf())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_gradcam_of_a_model_that_sees_the_left_half_puts_its_mass_there():
    x = torch.rand(6, 1, 32, 32)
    maps = gradcam(LeftEyed().eval(), x, torch.tensor([0, 1, 2, 0, 1, 2]))
    assert maps.shape == (6, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    left, right = maps[..., :16].sum(), maps[..., 16:].sum()
    assert left > 0 and left / (left + right) > 0.9


def blob_dataset(n: int = 120, size: int = 32, seed: int = 0):
    """Class 1 = a bright 6x6 square somewhere on noise, class 0 = noise alone: the evidence is local."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        img = rng.normal(90, 20, (size, size))
        if i % 2:
            r, c = rng.integers(0, size - 6, 2)
            img[r : r + 6, c : c + 6] = 230
        images.append(np.clip(img, 0, 255).astype(np.uint8)[None])
        labels.append(i % 2)
    pixels = np.ascontiguousarray(np.stack(images))
    return build_dataset(name="blobs", root=Path("/nonexistent"), pixels=pixels, labels=labels,
                         class_names=["plain", "blob"], paths=[f"{i}.png" for i in range(n)],
                         content_ids=[pixel_hash(p) for p in pixels], layout="synthetic")


@pytest.fixture(scope="module")
def blob_model():
    ds = blob_dataset()
    split = make_split(ds, seed=0)
    td = TrainData(ds.images[split.train], ds.labels[split.train], ds.images[split.val], ds.labels[split.val],
                   ds.class_names)
    torch.manual_seed(0)
    model = build(SPEC)
    r = train(model, td, TrainConfig(epochs=10, batch_size=16, seed=0))
    assert r.val_accuracy >= 90
    return model.eval(), ds, split


def test_deleting_the_gradcam_pixels_first_kills_the_decision_faster_than_random(blob_model):
    model, ds, split = blob_model
    blobs = [i for i in split.test.tolist() if ds.labels[i] == 1]
    x = ds.images[blobs].float() / 255
    maps, probs = attribute(model, x, "gradcam")
    curves = deletion_curves(model, x, probs.argmax(1), maps, steps=10)
    assert curves["attribution"].shape == (len(blobs), 11)
    assert area_under(curves["fractions"], curves["attribution"]) < area_under(curves["fractions"], curves["random"])
    # the square is 36 of 1024 pixels: removing the top 10% by Grad-CAM takes the 'blob' verdict away
    assert curves["attribution"][:, 1].mean() < 0.5 < curves["random"][:, 1].mean()


def test_explain_writes_a_map_per_image_and_names_a_missing_one(blob_model, tmp_path, capsys):
    from PIL import Image

    model, ds, split = blob_model
    save_model(model, SPEC, ds.class_names, tmp_path / "winner")
    paths = []
    for i in split.test[:2].tolist():
        p = tmp_path / f"img{i}.png"
        Image.fromarray(ds.images[i, 0].numpy()).save(p)
        paths.append(str(p))
    assert main(["explain", str(tmp_path / "winner"), *paths, "--out", str(tmp_path / "maps")]) == 0
    written = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert written == sorted(f"img{i}-gradcam.png" for i in split.test[:2].tolist())
    assert Image.open(tmp_path / "maps" / written[0]).size == (32, 32)
    capsys.readouterr()
    assert main(["explain", str(tmp_path / "winner"), str(tmp_path / "nope.png")]) == 2
    assert "nope.png: no such image" in capsys.readouterr().err


def test_explain_on_a_run_folder_writes_the_deletion_test_and_every_error(blob_model, tmp_path, capsys):
    from PIL import Image

    from defect_nas.data import load_dataset

    model, ds, _ = blob_model
    data = tmp_path / "blobs"
    for i in range(len(ds.labels)):
        folder = data / ds.class_names[int(ds.labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ds.images[i, 0].numpy()).save(folder / f"{i}.png")
    on_disk = load_dataset(str(data))
    run = tmp_path / "run"
    save_model(model, SPEC, ds.class_names, run / "winner")
    (run / "config.json").write_text(json.dumps({"dataset": str(data)}))
    (run / "split.json").write_text(json.dumps(make_split(on_disk, seed=0).to_json(on_disk)))
    assert main(["explain", str(run), "--steps", "10"]) == 0
    result = json.loads((run / "explain" / "deletion.json").read_text())
    assert result["images"] == len(make_split(on_disk, seed=0).test)
    assert result["deletion_auc"]["attribution"] < result["deletion_auc"]["random"]
    errors = [s for s in result["shown"] if s["label"] != s["predicted"]]
    assert len(result["shown"]) - len(errors) == 2  # one correct image per class, then every error
    assert all((run / "explain" / s["map"]).is_file() for s in result["shown"])
    assert "explain.html" in {p.name for p in (run / "explain").iterdir()}
