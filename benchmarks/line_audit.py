"""Look at a line set's defect-free images yourself, then see whether a model's errors follow your eye.

    .venv/bin/python benchmarks/line_audit.py /tmp/line/strip SHEETS_DIR [--n 30] [--seed 123]
    .venv/bin/python benchmarks/line_audit.py /tmp/line/strip SHEETS_DIR --part test   # every test `ok` image
    .venv/bin/python benchmarks/line_audit.py --score PREDICT.csv [--audit results/benchmarks/line_audit.csv]

A composed set is only as good as its labels: NEU-Seg's masks mark the annotated defects, and a
crop "without a mask pixel" is called defect-free. Whether those crops really are clean is a
question for eyes, not for a model trained on them. The first form writes ``SHEETS_DIR/audit{0,1,..}.png``
(10 numbered images each) and ``SHEETS_DIR/sample.txt`` (the files, in the sheets' order); the
verdicts a person gave are kept in ``results/benchmarks/line_audit.csv``. ``--part test`` takes every
``ok`` image of the test split a search with ``--split-seed 0`` uses, so the verdicts can be set
beside a model's calls on images it never trained on.

``--score`` is that check: it reads ``defect-nas predict --csv`` output on those images and counts,
per eye verdict, how many the model called ``ok``. If the unlabelled marks are what the model's
"defective" calls on ``ok`` images follow, the images the eye calls clean are called ``ok`` far more
often than those with a mark; if the model errs alike on both, the labels are not the cause.
Verdicts are given before the predictions are looked at.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

AUDIT_CSV = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "line_audit.csv"


def sample(folder: Path, n: int, seed: int) -> list[Path]:
    files = sorted((folder / "ok").glob("*.png"))
    pick = np.random.default_rng(seed).choice(len(files), n, replace=False)
    return [files[i] for i in sorted(pick)]


def test_part(folder: Path, split_seed: int = 0) -> list[Path]:
    """The ``ok`` images of the test split a search on ``folder`` with this split seed holds out."""
    from defect_nas.data import load_dataset, make_split

    ds = load_dataset(folder)
    split = make_split(ds, seed=split_seed)
    return sorted(folder / ds.paths[i] for i in split.test.tolist() if ds.paths[i].startswith("ok/"))


def sheets(files: list[Path], out: Path, per_sheet: int = 10) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for part in range(0, len(files), per_sheet):
        ims = [Image.open(f) for f in files[part:part + per_sheet]]
        sheet = Image.new("L", (40 + max(im.width for im in ims), sum(im.height + 6 for im in ims)), 255)
        draw, y = ImageDraw.Draw(sheet), 0
        for k, im in enumerate(ims):
            sheet.paste(im, (40, y))
            draw.text((5, y + 5), str(part + k), fill=0)
            y += im.height + 6
        sheet.save(out / f"audit{part // per_sheet}.png")
    (out / "sample.txt").write_text("\n".join(f.name for f in files) + "\n")


def score(predict_csv: Path, audit_csv: Path, part: str) -> dict:
    """Per eye verdict on the audited ``ok`` images of ``part``: how many the model called ``ok``."""
    verdicts = {r["file"]: r["verdict"] for r in csv.DictReader(audit_csv.open()) if r.get("part", "") == part}
    calls = {"/".join(Path(r["path"]).parts[-2:]): r["label"] for r in csv.DictReader(predict_csv.open())}
    missing = sorted(set(verdicts) - set(calls))
    if missing:
        raise SystemExit(f"{predict_csv}: no prediction for {len(missing)} audited image(s), e.g. {missing[0]}; "
                         "run predict on the set's ok/ folder")
    out = {}
    for verdict in sorted(set(verdicts.values())):
        said = Counter(calls[f] for f, v in verdicts.items() if v == verdict)
        n = sum(said.values())
        out[verdict] = {"images": n, "called_ok": said.get("ok", 0), "ok_recall": round(100 * said.get("ok", 0) / n, 1),
                        "called": dict(said)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, nargs="?")
    ap.add_argument("out", type=Path, nargs="?")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--part", choices=["sample", "test"], default="sample",
                    help="sample: --n seeded ok images; test: every ok image of the split seed 0's test part")
    ap.add_argument("--score", type=Path, help="a `defect-nas predict --csv` file on the audited images")
    ap.add_argument("--audit", type=Path, default=AUDIT_CSV)
    args = ap.parse_args()
    if args.score:
        print(json.dumps(score(args.score, args.audit, "test"), indent=1))
        return
    if args.folder is None or args.out is None:
        ap.error("give FOLDER and SHEETS_DIR, or --score PREDICT.csv")
    files = test_part(args.folder) if args.part == "test" else sample(args.folder, args.n, args.seed)
    sheets(files, args.out)
    print(f"{len(files)} images on sheets in {args.out}")


if __name__ == "__main__":
    main()
