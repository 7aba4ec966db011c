"""Dataset layer: load NEU, DAGM or any ImageFolder into memory, split it without leakage.

    ds = load_dataset("neu")              # $DEFECT_NAS_DATA/neu-cls, any NEU layout
    split = make_split(ds, seed=0)        # NEU: 200 train / 40 val / 60 test per class
    x, y = ds.images[split.train], ds.labels[split.train]

Errors a user can fix raise `defect_nas.core.errors.DataError` with one line naming the file or folder.
"""

_HOME = {  # name -> submodule: imported on first use, so `defect_nas.data.imageio` (the stand-alone
    # predictor's decoder) loads without torch, which the dataset modules import
    "DATASETS": "registry",
    "DATA_ENV": "registry",
    "Dataset": "dataset",
    "NEU_CLASSES": "layouts",
    "Split": "splits",
    "compute_fingerprint": "dataset",
    "dagm_image_labels": "dagm",
    "dagm_image_predictions": "dagm",
    "dagm_patch_origins": "dagm",
    "dagm_train_origin": "dagm",
    "dagm_vote": "dagm",
    "dataset_folder": "registry",
    "import_neu": "importer",
    "is_negative_name": "folder",
    "list_datasets": "registry",
    "load_dagm": "dagm",
    "load_dataset": "registry",
    "load_segmentation": "registry",
    "make_split": "splits",
    "neu_class": "layouts",
    "neu_class_from_stem": "layouts",
    "resolve_data_root": "registry",
    "sample_groups": "splits",
    "scan_path": "registry",
}


def __getattr__(name: str) -> object:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{_HOME[name]}"), name)


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
    "load_segmentation",
    "make_split",
    "neu_class",
    "neu_class_from_stem",
    "resolve_data_root",
    "sample_groups",
    "scan_path",
]
