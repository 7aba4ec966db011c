"""Look at a line set's defect-free images yourself: a seeded sample as numbered contact sheets.

    .venv/bin/python benchmarks/line_audit.py /tmp/line/strip SHEETS_DIR [--n 30] [--seed 123]

A composed set is only as good as its labels: NEU-Seg's masks mark the annotated defects, and a
crop "without a mask pixel" is called defect-free. Whether those crops really are clean is a
question for eyes, not for a model trained on them. This writes ``SHEETS_DIR/audit{0,1,2}.png``
(10 numbered images each) and ``SHEETS_DIR/sample.txt`` (the files, in the sheets' order); the
verdicts a person gave are kept in ``results/benchmarks/line_audit.csv``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def sample(folder: Path, n: int, seed: int) -> list[Path]:
    files = sorted((folder / "ok").glob("*.png"))
    pick = np.random.default_rng(seed).choice(len(files), n, replace=False)
    return [files[i] for i in sorted(pick)]


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()
    sheets(sample(args.folder, args.n, args.seed), args.out)
    print(f"sheets in {args.out}")


if __name__ == "__main__":
    main()
