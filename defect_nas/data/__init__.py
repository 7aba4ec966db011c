"""Dataset layer: load NEU, DAGM or any ImageFolder into memory, split it without leakage.

    ds = load_dataset("neu")              # $DEFECT_NAS_DATA/neu-cls, any NEU layout
    split = make_split(ds, seed=0)        # NEU: 200 train / 40 val / 60 test per class
    x, y = ds.images[split.train], ds.labels[split.train]

Errors a user can fix raise `defect_nas.core.errors.DataError` with one line naming the file or folder.
"""

from .dagm import (
    dagm_image_labels,
    dagm_image_predictions,
    dagm_patch_origins,
    dagm_train_origin,
    dagm_vote,
    load_dagm,
)
from .dataset import Dataset, compute_fingerprint
from .folder import is_negative_name
from .importer import import_neu
from .layouts import NEU_CLASSES, neu_class, neu_class_from_stem
from .registry import DATA_ENV, DATASETS, dataset_folder, list_datasets, load_dataset, resolve_data_root, scan_path
from .splits import Split, make_split, sample_groups

__all__ = [
    "DATA_ENV",
    "DATASETS",
    "NEU_CLASSES",
    "Dataset",
    "Split",
    "compute_fingerprint",
    "dagm_image_labels",
    "dagm_image_predictions",
    "dagm_patch_origins",
    "dagm_train_origin",
    "dagm_vote",
    "dataset_folder",
    "import_neu",
    "is_negative_name",
    "list_datasets",
    "load_dagm",
    "load_dataset",
    "make_split",
    "neu_class",
    "neu_class_from_stem",
    "resolve_data_root",
    "sample_groups",
    "scan_path",
]
