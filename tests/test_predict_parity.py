"""``defect-nas predict`` sees a file as training saw it: the same pixels whatever the format
(8-bit, 16-bit, RGB copy, JPEG), no stretching, and the same decision."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datagen import learnable_dataset, trained_tiny_model
from PIL import Image

from defect_nas.cli.main import main
from defect_nas.data.preprocess import read_for_model
from defect_nas.deploy.model import save_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ds = learnable_dataset(classes=3, per_class=40, size=32)
    folder = tmp_path_factory.mktemp("run") / "winner"
    split, _ = trained_tiny_model(ds, folder)
    return ds, split, folder


def formats(gray: np.ndarray, out) -> dict[str, str]:
    """The same image as an industrial camera or a colleague might save it."""
    files = {"png8": out / "a.png", "png16": out / "b.png", "rgb": out / "c.png", "jpeg": out / "d.jpg"}
    Image.fromarray(gray).save(files["png8"])
    Image.fromarray(gray.astype(np.uint16) * 257).save(files["png16"])  # full 16-bit range, as mono cameras write
    Image.fromarray(np.stack([gray] * 3, 2)).save(files["rgb"])
    Image.fromarray(gray).save(files["jpeg"], quality=95)
    return {k: str(v) for k, v in files.items()}


def test_every_format_gives_the_training_pixels(trained, tmp_path):
    ds, split, _ = trained
    i = int(split.test[0])
    files = formats(ds.images[i, 0].numpy(), tmp_path)
    for name in ("png8", "png16", "rgb"):  # lossless: bit-exact with what training used
        assert torch.equal(read_for_model(files[name], 1, 32), ds.images[i : i + 1]), name
    jpeg = read_for_model(files["jpeg"], 1, 32).int()
    assert (jpeg - ds.images[i : i + 1].int()).abs().float().mean() < 3  # lossy, but close


def test_a_file_of_another_size_is_scaled_to_the_models_square_with_nothing_cropped(trained, tmp_path):
    """As the training data's odd sizes were (imageio.RESIZE): a defect at a wide image's end stays in."""
    ds, split, _ = trained
    wide = np.pad(ds.images[int(split.test[0]), 0].numpy(), ((0, 0), (8, 8)), mode="reflect")  # 32 x 48
    wide[:, -3:] = 255  # a bright defect at the right end
    Image.fromarray(wide).save(tmp_path / "wide.png")
    x = read_for_model(tmp_path / "wide.png", 1, 32)[0, 0].numpy()
    assert np.array_equal(x, np.asarray(Image.fromarray(wide).resize((32, 32), Image.Resampling.BILINEAR)))
    assert x[:, -1].min() > 200  # the defect is still in the model's input


def test_predict_gives_the_same_answer_for_every_format(trained, tmp_path, capsys):
    ds, split, folder = trained
    for i in split.test[:6].tolist():
        out = tmp_path / str(i)
        out.mkdir()
        files = formats(ds.images[i, 0].numpy(), out)
        capsys.readouterr()
        assert main(["predict", str(folder), *files.values(), "--json"]) == 0
        preds = json.loads(capsys.readouterr().out)
        assert len({p["label"] for p in preds}) == 1  # one decision for the one image
        lossless = [p["probability"] for p, k in zip(preds, files) if k != "jpeg"]
        assert max(lossless) - min(lossless) < 1e-6


def test_the_model_cards_snippet_reproduces_predict(trained, tmp_path, capsys, monkeypatch):
    import re

    from defect_nas.core.spec import ArchSpec as _Spec
    from defect_nas.deploy.model import model_card

    ds, split, folder = trained
    image = tmp_path / "x.png"
    Image.fromarray(ds.images[int(split.test[0]), 0].numpy()).save(image)
    card = model_card("w", _Spec.from_json((folder / "arch.json").read_text()), {"macs": 1, "params": 1}, {})
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    monkeypatch.chdir(folder.parent)  # the card speaks of 'winner' beside the user
    capsys.readouterr()
    exec(snippet.replace("IMAGE.png", str(image)), {})
    label, probability, decision = capsys.readouterr().out.split()
    assert main(["predict", str(folder), str(image), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)[0]
    assert label == pred["label"] and abs(float(probability) - pred["probability"]) < 1e-6
    assert decision == str(pred["decision"])  # None here: this folder was saved without an operating point


def test_predict_runs_the_int8_model_of_an_int8_export_and_says_so(trained, tmp_path, capsys):
    """predict on an `export --format onnx-int8` folder silently ran the fp32 weights beside the
    int8 model; it now runs what was exported for deployment, and --json says which it ran."""
    from defect_nas.data.preprocess import model_input
    from defect_nas.deploy.model import load_model
    from defect_nas.deploy.runtimes import INPUT_NAME, ort_session

    ds, split, folder = trained
    model, spec, labels = load_model(folder)
    int8 = tmp_path / "int8"
    calibration = model_input(ds.images[split.train[:32]]).numpy()
    save_model(model, spec, labels, int8, ("safetensors", "onnx", "onnx-int8"), calibration=calibration)
    image = tmp_path / "x.png"
    i = int(split.test[0])
    Image.fromarray(ds.images[i, 0].numpy()).save(image)
    assert main(["predict", str(int8), str(image), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)[0]
    assert (pred["runtime"], pred["precision"]) == ("onnxruntime", "int8")
    x = model_input(ds.images[i : i + 1]).numpy()
    logits = ort_session(int8 / "model.int8.onnx").run(None, {INPUT_NAME: x})[0]
    assert abs(pred["probability"] - float(torch.softmax(torch.from_numpy(logits), 1).max())) < 1e-6
    assert main(["predict", str(folder), str(image), "--json"]) == 0  # an fp32 export runs model.onnx, said
    assert json.loads(capsys.readouterr().out)[0]["precision"] == "fp32"
