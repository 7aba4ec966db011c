"""Can a NEU-Seg-derived line set's labels be read from its pixels? A segmenter trained on the masks says.

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/line_labels.py \
        --segmenter results/neu-seg-200m/winner --data /tmp/line/strip [--split-seed 0]

``line_sets.py`` calls a crop defect-free when no mask pixel of NEU-Seg falls inside it. Every
NEU-Seg image shows a defective steel surface, and its masks mark the main defects, not
necessarily all of them. Two measurements, by the segmenter ``defect-nas search --task segment``
made on NEU-Seg (81.7% test mIoU, ``results/neu-seg-200m``):

1. **Held-out NEU-Seg images** (the segmenter's own test split, never trained on): how many hold a
   predicted defect (a blob of at least 20 px) that lies at least 3 px away from every mask pixel,
   i.e. a defect-like region the masks leave out (or a false alarm: the eye audit decides which).
2. **The line set's images**, each scaled back to NEU's pixel size and segmented whole: an image is
   called defective when the largest per-class defect area passes a threshold chosen on the set's
   validation part (for balanced accuracy), its class being that class. Balanced test accuracy, per-class
   recall and the ok-vs-defect AUROC of the defect area say how far the masks' own model can read the
   labels. The segmenter saw most of the source pixels with their masks in training, so this is an
   optimistic reading, not a fair test of it; a low score cannot be blamed on that.

Rows go to ``results/benchmarks/line_labels.{csv,json}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import binary_dilation, label

from defect_nas.core.files import write_csv, write_json
from defect_nas.measure.runinfo import environment

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks"


def segment(model, pixels: np.ndarray) -> np.ndarray:
    """Per-pixel class (0 = background) of a grey uint8 image of any size (the decoder upsamples to it)."""
    import torch

    x = torch.from_numpy(pixels.astype(np.float32) / 255)[None, None]
    with torch.no_grad():
        return model(x).argmax(1)[0].numpy()


def unmasked_defects(model, root: Path, files: list[str], min_px: int = 20, gap: int = 3) -> dict:
    """Share of NEU-Seg images holding a predicted defect blob of ``min_px`` or more that lies at
    least ``gap`` px away from every mask pixel."""
    found, sizes = 0, []
    for f in files:
        img = root / f
        mask = np.asarray(Image.open(root / "masks" / img.parent.name / f"{img.stem}.png")) > 0
        blobs, n = label(segment(model, np.asarray(Image.open(img).convert("L"))) > 0)
        near = binary_dilation(mask, iterations=gap)
        far = [k for k in range(1, n + 1) if (blobs == k).sum() >= min_px and not (near & (blobs == k)).any()]
        found += bool(far)
        sizes += [int((blobs == k).sum()) for k in far]
    return {"images": len(files), "with_unmasked_defect_pct": round(100 * found / len(files), 1),
            "median_blob_px": float(np.median(sizes)) if sizes else 0.0}


def read_set(model, data: Path, split_seed: int, scale: float) -> tuple[list[str], dict[str, np.ndarray]]:
    """Class names and, per split part, (true labels, largest defect area per class [N, 3])."""
    from defect_nas.data import load_dataset, make_split

    ds = load_dataset(data, size=32)  # files, labels and the split; pixels read below at full size
    split = make_split(ds, seed=split_seed)
    parts = {}
    for part in ("val", "test"):
        idx = getattr(split, part).tolist()
        areas = []
        for i in idx:
            im = Image.open(data / ds.paths[i]).convert("L")
            im = im.resize((round(im.width / scale), round(im.height / scale)), Image.Resampling.BILINEAR)
            pred = segment(model, np.asarray(im))
            areas.append([int((pred == c).sum()) for c in (1, 2, 3)])
        parts[part] = (ds.labels[idx].numpy(), np.asarray(areas, float))
    return list(ds.class_names), parts


def decide(areas: np.ndarray, threshold: float, names: list[str]) -> np.ndarray:
    """Class index per image: the largest defect class when its area passes ``threshold``, else ok."""
    defect_idx = [names.index(n) for n in ("inclusion", "patches", "scratches")]
    k = np.asarray(defect_idx)[areas.argmax(1)]
    return np.where(areas.max(1) > threshold, k, names.index("ok"))


def main() -> None:
    from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

    from defect_nas.deploy.model import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segmenter", type=Path, required=True, help="a NEU-Seg segmenter's winner folder")
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="line sets built by line_sets.py")
    ap.add_argument("--scale", type=float, default=1.5, help="the sets' upscaling (line_sets.py: 1.5 for strip)")
    ap.add_argument("--split-seed", type=int, default=0)
    args = ap.parse_args()
    import os

    import torch

    torch.set_num_threads(2)
    model, _, _ = load_model(args.segmenter)
    run = args.segmenter.parent
    split = json.loads((run / "split.json").read_text())
    root = Path(os.environ.get("DEFECT_NAS_DATA", "")) / "neu-seg"
    rows = [{"data": "neu-seg test split", "what": "unmasked defects", **unmasked_defects(model, root, split["test"])}]
    print(rows[-1], flush=True)
    for data in args.data:
        names, parts = read_set(model, data, args.split_seed, args.scale)
        yv, av = parts["val"]
        yt, at = parts["test"]
        ok = names.index("ok")
        grid = np.unique(np.concatenate([[0], av.max(1)]))
        best = max(grid, key=lambda t: balanced_accuracy_score(yv, decide(av, t, names)))
        pred = decide(at, best, names)
        recall = recall_score(yt, pred, labels=range(len(names)), average=None, zero_division=0)
        rows.append({"data": data.name, "what": "segmenter as classifier", "threshold_px": float(best),
                     "val_balanced_accuracy": round(100 * balanced_accuracy_score(yv, decide(av, best, names)), 1),
                     "test_balanced_accuracy": round(100 * balanced_accuracy_score(yt, pred), 1),
                     "recall": {n: round(100 * float(r), 1) for n, r in zip(names, recall)},
                     "auroc_ok_vs_defect": round(float(roc_auc_score(yt != ok, at.sum(1))), 3),
                     "median_defect_px": {names[c]: float(np.median(at[yt == c].max(1))) for c in range(len(names))}})
        print(rows[-1], flush=True)
    meta = {"segmenter": str(args.segmenter), "split_seed": args.split_seed, "scale": args.scale}
    write_json(OUT / "line_labels.json", [{**r, **meta, "environment": environment(args.split_seed)} for r in rows])
    write_csv(OUT / "line_labels.csv", [{k: json.dumps(v) if isinstance(v, dict) else v
                                         for k, v in {**r, **meta}.items()} for r in rows])


if __name__ == "__main__":
    main()
