"""Re-check a search's exported winner the way a user runs it: ``defect-nas predict`` on every file
of the run's recorded test split, scored against the class folder each file sits in.

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python scripts/check_predict.py results/neu-100m

A ``--target-accuracy`` run (``results/neu-target-99.5``) keeps its split in the chosen budget's folder
(``budgets/<N>m/``, the same split for every budget); its ``winner/`` is that budget's export.

Prints the accuracy (and balanced accuracy, the mean per-class recall) and writes
``RUN/predict_check.json`` (per-file predictions included). A segmentation run (``search --task segment``)
is re-scored with ``predict --truth`` against the recorded test files' masks: mIoU and IoU per class.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def main() -> None:
    run = Path(sys.argv[1])
    from defect_nas.core.runfolder import RunFolder

    source = RunFolder(run).split_source()  # a target run's split is in its chosen budget's folder
    split = json.loads((source / "split.json").read_text())
    from defect_nas.data.registry import DATASETS, find_registered

    name = json.loads((source / "config.json").read_text())["dataset"]
    data_root = find_registered(name.lower()) if name.lower() in DATASETS else Path(name)
    files = [data_root / p for p in split["test"]]
    if json.loads((source / "config.json").read_text()).get("task") == "segment":
        return check_segmenter(run, data_root, split["test"])
    cli = [sys.executable, "-m", "defect_nas", "predict", str(run / "winner"), *map(str, files), "--json"]
    out = subprocess.run(cli, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    preds = json.loads(out.stdout)
    rows = [{"file": p, "label": Path(p).parent.name, "predicted": o["label"], "probability": o["probability"],
             "decision": o.get("decision")}
            for p, o in zip(split["test"], preds)]
    from sklearn.metrics import balanced_accuracy_score

    correct = sum(r["label"] == r["predicted"] for r in rows)
    truth, said = [r["label"] for r in rows], [r["predicted"] for r in rows]
    balanced = 100 * balanced_accuracy_score(truth, said)
    recall = {c: 100 * sum(t == s == c for t, s in zip(truth, said)) / truth.count(c) for c in sorted(set(truth))}
    result = {"run": str(run), "test_files": len(rows), "correct": correct, "accuracy": 100 * correct / len(rows),
              "balanced_accuracy": balanced, "recall": recall,
              "wrong": [r for r in rows if r["label"] != r["predicted"]], "predictions": rows}
    (run / "predict_check.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"defect-nas predict on {len(rows)} recorded test files: {correct} correct, {result['accuracy']:.2f}%, "
          f"balanced {balanced:.2f}%")


def check_segmenter(run: Path, data_root: Path, test: list[str]) -> None:
    """``predict --truth`` on the recorded test images, by folder (NEU-Seg: images/test with masks/test)."""
    import tempfile

    scores = []
    folders = sorted({str(Path(p).parent) for p in test})
    for folder in folders:
        images = [str(data_root / p) for p in test if str(Path(p).parent) == folder]
        truth = data_root / folder.replace("images", "masks", 1) if folder.startswith("images") else data_root / folder
        with tempfile.TemporaryDirectory() as out:
            cli = [sys.executable, "-m", "defect_nas", "predict", str(run / "winner"), *images, "--truth", str(truth),
                   "--out", out, "--json"]
            done = subprocess.run(cli, capture_output=True, text=True, check=True,
                                  cwd=Path(__file__).resolve().parents[1])
            scores.append(json.loads(done.stdout))
    if len(scores) != 1:
        raise SystemExit(f"{run}: test images in {len(folders)} folders; score each with defect-nas predict --truth")
    metrics = json.loads((run / "winner" / "metrics.json").read_text())
    result = {"run": str(run), "test_files": scores[0]["images"], **scores[0],
              "search_test_miou": metrics["test_miou"], "predict_minus_search_points":
              scores[0]["scores"]["miou"] - metrics["test_miou"]}
    (run / "predict_check.json").write_text(json.dumps(result, indent=2) + "\n")
    s = result["scores"]
    print(f"defect-nas predict on {result['test_files']} recorded test images: mIoU {s['miou']:.2f}% (the search "
          f"measured {metrics['test_miou']:.2f}% in PyTorch); "
          + ", ".join(f"{n} {v:.2f}%" for n, v in s["iou"].items()))


if __name__ == "__main__":
    main()
