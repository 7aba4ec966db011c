"""The in-memory `Dataset` every evaluator consumes, and its content fingerprint.

Loaded once: all pixels live in one uint8 tensor so training never touches the
disk again and two runs on the same data can be proven identical by hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

FINGERPRINT_VERSION = "defect-nas/data-v1"


def compute_fingerprint(
    content_ids: Sequence[str],
    labels: Sequence[int],
    class_names: Sequence[str],
    shape: Sequence[int],
    subsets: Sequence[str] | None = None,
) -> str:
    """sha256 over sorted "<pixel hash> <class name>" lines: independent of file names, order and layout.

    The header fixes the tensor shape and the class order (label ids), so the same
    pixels with other label ids or another size give another fingerprint.
    """
    head = f"{FINGERPRINT_VERSION}\nshape {'x'.join(map(str, shape))}\nclasses {'|'.join(class_names)}\n"
    h = hashlib.sha256(head.encode())
    tags = subsets if subsets is not None else [""] * len(content_ids)
    lines = sorted(
        f"{cid} {class_names[int(lab)]} {tag}".rstrip() + "\n" for cid, lab, tag in zip(content_ids, labels, tags)
    )
    for line in lines:
        h.update(line.encode())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image set held in memory.

    images: uint8 [N, C, H, W]; labels: int64 [N] indexing `class_names` (canonical order);
    paths: posix paths relative to `root` (patch datasets add "#y,x", the crop's top-left);
    content_ids: sha256 of each sample's pixels (equal ids = identical images);
    negative_classes: label ids meaning "no defect" (for TPR/TNR);
    groups: optional int64 [N]; samples with the same group come from one source image
    and must stay in the same split part (DAGM patches);
    subsets: optional predefined part per sample ("train"/"test") from the dataset's authors.
    """

    name: str
    root: Path
    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    paths: tuple[str, ...]
    content_ids: tuple[str, ...]
    fingerprint: str
    layout: str = "imagefolder"
    negative_classes: tuple[int, ...] = ()
    groups: torch.Tensor | None = None
    subsets: tuple[str, ...] | None = None
    info: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.paths)
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[0] != n:
            raise ValueError(
                f"images must be uint8 [N, C, H, W] with N={n}, got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or tuple(self.labels.shape) != (n,):
            raise ValueError(f"labels must be int64 [{n}], got {self.labels.dtype} {tuple(self.labels.shape)}")
        if len(self.content_ids) != n:
            raise ValueError("content_ids must have one entry per image")
        if self.groups is not None and tuple(self.groups.shape) != (n,):
            raise ValueError("groups must have one entry per image")
        if self.subsets is not None and len(self.subsets) != n:
            raise ValueError("subsets must have one entry per image")

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        c, h, w = self.images.shape[1:]
        return (
            f"Dataset(name={self.name!r}, n={len(self)}, classes={len(self.class_names)}, "
            f"shape={c}x{h}x{w}, layout={self.layout!r}, fingerprint={self.fingerprint[:12]})"
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def class_counts(self) -> dict[str, int]:
        """Images per class name, in class order."""
        counts = torch.bincount(self.labels, minlength=self.num_classes).tolist()
        return dict(zip(self.class_names, counts))

    def describe(self) -> dict:
        """JSON-ready summary for logs and result files."""
        return {
            "name": self.name,
            "root": str(self.root),
            "layout": self.layout,
            "images": len(self),
            "shape": [self.channels, *self.image_size],
            "classes": self.class_counts(),
            "negative_classes": list(self.negative_classes),
            "fingerprint": self.fingerprint,
            "distinct_images": len(set(self.content_ids)),
        }


def build_dataset(
    *,
    name: str,
    root: Path,
    pixels,
    labels: Sequence[int],
    class_names: Sequence[str],
    paths: Sequence[str],
    content_ids: Sequence[str],
    layout: str,
    negative_classes: Sequence[int] = (),
    groups: Sequence[int] | None = None,
    subsets: Sequence[str] | None = None,
    info: Mapping[str, object] | None = None,
) -> Dataset:
    """Wrap decoded pixels (numpy uint8 [N, C, H, W]) and metadata into a Dataset with its fingerprint."""
    images = torch.from_numpy(pixels)
    fp = compute_fingerprint(content_ids, labels, class_names, images.shape[1:], subsets)
    return Dataset(
        name=name,
        root=Path(root),
        images=images,
        labels=torch.as_tensor(list(labels), dtype=torch.int64),
        class_names=tuple(class_names),
        paths=tuple(paths),
        content_ids=tuple(content_ids),
        fingerprint=fp,
        layout=layout,
        negative_classes=tuple(sorted(negative_classes)),
        groups=None if groups is None else torch.as_tensor(list(groups), dtype=torch.int64),
        subsets=None if subsets is None else tuple(subsets),
        info=dict(info or {}),
    )
