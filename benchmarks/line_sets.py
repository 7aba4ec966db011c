"""Line-like datasets built from NEU-Seg's pixel masks, in a folder you name (never committed).

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/line_sets.py OUT [--sets strip panel tile]
    ... --sets tile-clean-whole --judge results/neu-seg-200m/winner

An inspection line's data is mostly defect-free parts, small defects and images of many sizes and
aspect ratios. NEU-Seg (4,470 steel images, 200 x 200, every one holding a defect, with masks of
inclusions, patches and scratches) says where each defect is, so such a set can be composed from it:
each image is one or more crops of NEU-Seg images of one steel texture side by side (or stacked); no
source pixel is used twice in a set, so no pixels leak across splits. A
defect-free image's crops hold no mask pixel; a defective image has exactly one crop with mask
pixels of one class, placed at a random position (the ends included) and limited in area. A
defect-free image draws its texture like a defective one, so texture alone never says "ok".

- ``strip``: 900 wide images: 2-4 crops 70-120 px high and 40-100 px wide side by side, upscaled
  1.5x (105-180 x 120-600 px), 70% defect-free (``ok``), defects 0.3-4% of the image's pixels.
- ``panel``: 900 images of 2-3 crops 60-100 x 40-90 px, side by side or stacked, upscaled 2.5x
  (wide and tall images, 100-675 px a side), 75% defect-free, defects 0.2-2.5% of the pixels:
  larger images, smaller defects.
- ``tile``: 900 images of ONE crop 70-120 x 60-140 px, upscaled 1.5x (105-180 x 90-210 px, aspect
  0.5-2), 70% defect-free, defects 0.3-4%: one continuous surface per image, no seams between crops
  of different surfaces (a real part's image has none).

NEU-Seg's masks are not exhaustive (a person's eye, ``line_audit.py``, and a segmenter trained on
them, ``line_labels.py``, both find unmarked defects), and a crop's mask pixels may be the cut edge of
a defect lying mostly outside it. Two variants, appended to a shape's name, fix each:

- ``-clean``: a defect-free crop also keeps 2 px away from every pixel a NEU-Seg segmenter (``--judge``,
  a ``defect-nas search --task segment`` winner folder) calls defective in the whole source image.
- ``-whole``: a defective crop holds whole defects: no mask pixel on its border.

What each changes is measured in ``docs/line-data.md`` (``line_pool.py`` on ``strip``/``tile`` and
their variants). And a real set:

- ``kolektor``: KolektorSDD (Tabernik et al., J. Intell. Manuf. 31, 2020; Kolektor Group and ViCoS,
  University of Ljubljana, CC BY-NC-SA 4.0), commutator photographs of 500 x 1235-1285 px, cracks a few
  pixels wide, from its public copy in the GitHub repository ``stoy95536/KolektorSDD_Yolov8_Datasets``
  (an image is defective when its YOLO label file is not empty). Fetch that repository yourself (a bare
  git mirror; nothing here downloads) and pass ``--kolektor-mirror GIT_DIR``: 383 images after dropping
  16 byte-identical copies, 333 ``ok`` and 50 ``defect``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import binary_dilation

CLASSES = ("ok", "inclusion", "patches", "scratches")  # mask values 1..3 name the defect classes


@dataclass(frozen=True)
class LineShape:
    name: str
    images: int
    good_share: float
    height: tuple[int, int]  # of one crop, before scaling
    width: tuple[int, int]
    pieces: tuple[int, int]
    defect_share: tuple[float, float]  # of the whole image's pixels
    scale: float = 1.0
    stack_share: float = 0.0  # share of images whose crops are stacked (tall images)


SHAPES = {
    "strip": LineShape("strip", 900, 0.70, (70, 120), (40, 100), (2, 4), (0.003, 0.04), 1.5),
    "panel": LineShape("panel", 900, 0.75, (60, 100), (40, 90), (2, 3), (0.002, 0.025), 2.5, 0.5),
    # one crop per image, so one continuous surface and no seams between crops of different surfaces
    "tile": LineShape("tile", 900, 0.70, (70, 120), (60, 140), (1, 1), (0.003, 0.04), 1.5),
}


def seg_root() -> Path:
    root = Path(os.environ.get("DEFECT_NAS_DATA", "")) / "neu-seg"
    if not (root / "images").is_dir():
        sys.exit(f"NEU-Seg not found at {root}: set DEFECT_NAS_DATA to the folder that holds neu-seg/")
    return root


class Sources:
    """NEU-Seg's images and masks by texture group (the class of most of an image's mask pixels:
    NEU's steel textures differ by defect type), each group in a seeded order and visited
    round-robin. A pixel is handed out once (``used`` marks it), so no pixel appears in two images
    of a set and none leaks across splits."""

    def __init__(self, root: Path, rng: np.random.Generator, margin: int = 0,
                 judge: Callable[[np.ndarray], np.ndarray] | None = None, whole: bool = False):
        pairs = sorted((p, root / "masks" / p.parent.name / f"{p.stem}.png") for p in (root / "images").glob("*/*.jpg"))
        self.groups: dict[int, list[int]] = {1: [], 2: [], 3: []}
        self.pairs = [pairs[i] for i in rng.permutation(len(pairs))]
        for i, (_, mask) in enumerate(self.pairs):
            counts = np.bincount(np.asarray(Image.open(mask)).ravel(), minlength=4)[1:4]
            self.groups[int(counts.argmax()) + 1].append(i)
        self.cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self.margin = margin  # a defect-free crop keeps this many pixels away from any mask pixel
        self.judge = judge  # a second opinion: where a segmenter sees a defect the masks do not mark
        self.whole = whole  # a defective crop holds whole defects, none cut by its edge
        self.next = dict.fromkeys(self.groups, 0)

    def take(self, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(image, mask, used, near) of the group's next source image; mark ``used`` for the crop taken."""
        members = self.groups[group]
        i = members[self.next[group] % len(members)]
        self.next[group] += 1
        if self.next[group] > 20 * len(members):
            raise RuntimeError("NEU-Seg has too few unused pixels for this set; ask for fewer or smaller images")
        if i not in self.cache:
            img, mask = self.pairs[i]
            m, pixels = np.asarray(Image.open(mask)), np.asarray(Image.open(img).convert("L"))
            # where a defect-free crop may not reach: the mask (and the judge's defects), widened by
            # the margin (defects can reach past their annotated outline)
            marked = m > 0 if self.judge is None else (m > 0) | self.judge(pixels)
            near = binary_dilation(marked, iterations=self.margin) if self.margin else marked
            self.cache[i] = (pixels, m, np.zeros(m.shape, bool), near)
        return self.cache[i]


def _window_sums(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """Mask pixels inside every h x w window (summed-area table), indexed by the window's top-left."""
    table = np.pad((mask > 0).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return table[h:, w:] - table[:-h, w:] - table[h:, :-w] + table[:-h, :-w]


def background(src: Sources, group: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A crop without a single mask pixel (NEU-Seg's defects cover ~12% of its pixels)."""
    while True:
        img, _, used, near = src.take(group)
        ys, xs = np.nonzero(_window_sums(near | used, h, w) == 0)
        if len(ys):
            i = int(rng.integers(len(ys)))
            used[ys[i]:ys[i] + h, xs[i]:xs[i] + w] = True
            return img[ys[i]:ys[i] + h, xs[i]:xs[i] + w]


def defect(src: Sources, group: int, h: int, w: int, area: tuple[int, int],
           rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A crop whose mask pixels are all of class ``group`` and number ``area`` (min, max)."""
    while True:
        img, mask, used, _ = src.take(group)
        sums, busy = _window_sums(mask, h, w), _window_sums(used, h, w)
        for cls in (group,):
            own, other = _window_sums(mask == cls, h, w), sums
            ok = (own == other) & (own >= area[0]) & (own <= area[1]) & (busy == 0)
            if src.whole:  # no mask pixel on the crop's border: no defect is cut to a sliver
                inner = _window_sums(mask, h - 2, w - 2)[1:sums.shape[0] + 1, 1:sums.shape[1] + 1]
                ok &= sums == inner
            ys, xs = np.nonzero(ok)
            if len(ys):
                i = int(rng.integers(len(ys)))
                used[ys[i]:ys[i] + h, xs[i]:xs[i] + w] = True
                return img[ys[i]:ys[i] + h, xs[i]:xs[i] + w], int(cls)


def compose(shape: LineShape, src: Sources, rng: np.random.Generator, defective: bool) -> tuple[np.ndarray, int]:
    h = int(rng.integers(shape.height[0], shape.height[1] + 1))
    k = int(rng.integers(shape.pieces[0], shape.pieces[1] + 1))
    widths = [int(rng.integers(shape.width[0], shape.width[1] + 1)) for _ in range(k)]
    stacked = rng.random() < shape.stack_share
    group = int(rng.integers(1, 4))  # one steel texture per image, defective or not: texture never tells "ok"
    label, bad = 0, int(rng.integers(0, k)) if defective else -1
    total = h * sum(widths)
    lo, hi = (int(total * f) for f in shape.defect_share)
    pieces = []
    for i, w in enumerate(widths):
        if i == bad:
            piece, label = defect(src, group, h, w, (max(20, lo), max(40, hi)), rng)
        else:
            piece = background(src, group, h, w, rng)
        pieces.append(piece.T if stacked else piece)
    out = np.concatenate(pieces, axis=0 if stacked else 1)
    if shape.scale != 1.0:
        oh, ow = out.shape
        out = np.asarray(Image.fromarray(out).resize((round(ow * shape.scale), round(oh * shape.scale)),
                                                     Image.Resampling.BILINEAR))
    return out, label


def segmenter_judge(model_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Pixels a NEU-Seg segmenter (a ``defect-nas search --task segment`` winner folder) calls defective
    in a whole 200 x 200 source image: the defects its masks leave out, as far as a model trained on
    the masks can tell."""
    import torch

    from defect_nas.deploy.model import load_model

    model, _, names = load_model(model_dir)
    if names[0] != "background":
        sys.exit(f"{model_dir}: not a segmenter (its first class is {names[0]!r}, not 'background')")

    def judge(pixels: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(pixels.astype(np.float32) / 255)[None, None]
            return model(x).argmax(1)[0].numpy() > 0
    return judge


def build(shape: LineShape, out: Path, seed: int = 0, margin: int = 0,
          judge_dir: Path | None = None, whole: bool = False) -> dict:
    """Write ``out/<class>/<n>.png``; return what was written (class counts, size range). With
    ``judge_dir`` a defect-free crop also avoids what that segmenter calls defective."""
    rng = np.random.default_rng(seed)
    src = Sources(seg_root(), rng, margin, segmenter_judge(judge_dir) if judge_dir else None, whole)
    n_good = round(shape.images * shape.good_share)
    counts = dict.fromkeys(CLASSES, 0)
    sizes = []
    for n in range(shape.images):
        arr, label = compose(shape, src, rng, defective=n >= n_good)
        cls = CLASSES[label]
        (out / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(out / cls / f"{n:05d}.png")
        counts[cls] += 1
        sizes.append(arr.shape)
    hs, ws = [s[0] for s in sizes], [s[1] for s in sizes]
    return {"set": shape.name, "folder": str(out), "classes": counts, "seed": seed, "margin": margin,
            "judge": str(judge_dir) if judge_dir else None, "whole_defects": whole,
            "shape": asdict(shape),
            "heights": [min(hs), max(hs)], "widths": [min(ws), max(ws)], "distinct_sizes": len(set(sizes))}


KOLEKTOR_REPO = "stoy95536/KolektorSDD_Yolov8_Datasets"


def export_kolektor(mirror: Path, out: Path) -> dict:
    """``out/{ok,defect}/<split>_<n>.jpg`` from the bare git mirror, each distinct image once."""
    def git(*args: str) -> bytes:
        return subprocess.run(["git", "--git-dir", str(mirror), *args], capture_output=True, check=True).stdout

    seen, counts, sizes = set(), {"ok": 0, "defect": 0}, []
    for line in git("ls-tree", "-r", "HEAD", "Datasets/images").decode().splitlines():
        meta, path = line.split("\t")
        blob = meta.split()[2]
        if blob in seen:  # 16 images are byte-identical copies of others (same class)
            continue
        seen.add(blob)
        _, _, part, name = path.split("/")
        label = git("show", f"HEAD:Datasets/labels/{part}/{Path(name).stem}.txt").strip()
        cls = "defect" if label else "ok"
        (out / cls).mkdir(parents=True, exist_ok=True)
        target = out / cls / f"{part}_{name}"
        target.write_bytes(git("show", f"HEAD:{path}"))
        counts[cls] += 1
        sizes.append(Image.open(target).size)
    return {"set": "kolektor", "folder": str(out), "source": f"github:{KOLEKTOR_REPO}", "classes": counts,
            "widths": [min(w for w, _ in sizes), max(w for w, _ in sizes)],
            "heights": [min(h for _, h in sizes), max(h for _, h in sizes)], "distinct_sizes": len(set(sizes))}


VARIANTS = {
    "clean": "defect-free crops also avoid what a NEU-Seg segmenter (--judge) calls defective, 2 px apart",
    "whole": "a defective crop holds whole defects, none cut by its edge",
}


def build_named(name: str, out: Path, judge_dir: Path | None = None, seed: int = 0, margin: int | None = None) -> dict:
    """A set by name: a shape of ``SHAPES``, then its variants (``strip``, ``tile-clean-whole``);
    ``margin`` (pixels between a defect-free crop and any mask pixel) defaults to 2 when clean, else 0."""
    base, *variants = name.split("-")
    if base not in SHAPES or any(v not in VARIANTS for v in variants):
        sys.exit(f"{name}: not a set; name a shape ({', '.join(SHAPES)}) and any of -{', -'.join(VARIANTS)}")
    clean = "clean" in variants
    if clean and (judge_dir is None or not judge_dir.is_dir()):
        sys.exit(f"{name}: -clean needs --judge, a NEU-Seg segmenter's winner folder (search --task segment)")
    margin = (2 if clean else 0) if margin is None else margin
    info = build(SHAPES[base], out, seed, margin, judge_dir=judge_dir if clean else None, whole="whole" in variants)
    return {**info, "set": name}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--sets", nargs="+", default=list(SHAPES), help=f"{', '.join(SHAPES)} or kolektor; a NEU-Seg "
                    f"shape may carry variants: {'; '.join(f'-{k}: {v}' for k, v in VARIANTS.items())}")
    ap.add_argument("--kolektor-mirror", type=Path, help=f"bare git mirror of github.com/{KOLEKTOR_REPO}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--judge", type=Path, help="a NEU-Seg segmenter's winner folder, for the -clean variant")
    ap.add_argument("--margin", type=int, help="pixels between a defect-free crop and any mask pixel (default: 2 "
                                               "when -clean, else 0)")
    args = ap.parse_args()
    for name in args.sets:
        if name == "kolektor":
            if args.kolektor_mirror is None or not args.kolektor_mirror.is_dir():
                sys.exit(f"kolektor: fetch github.com/{KOLEKTOR_REPO} and pass --kolektor-mirror GIT_DIR")
            print(json.dumps(export_kolektor(args.kolektor_mirror, args.out / name)))
            continue
        print(json.dumps(build_named(name, args.out / name, args.judge, args.seed, args.margin)))


if __name__ == "__main__":
    main()
