"""``defect-nas datasets import neu``: a NEU download (folder or zip) becomes $DEFECT_NAS_DATA/neu-cls,
whole or not at all (generated data)."""

from __future__ import annotations

from pathlib import Path

import pytest
from datagen import make_neu, zip_dir

from defect_nas.core.errors import DataError
from defect_nas.data import NEU_CLASSES, import_neu, load_dataset


@pytest.fixture(scope="module")
def neu_download(tmp_path_factory) -> Path:
    """A full-size (6 x 300) but tiny-pixel NEU-CLS flat release."""
    root = tmp_path_factory.mktemp("download") / "NEU-CLS"
    make_neu(root, "flat", n=300, size=4, ext=".bmp")
    return root


def _no_leftovers(data_root: Path) -> bool:
    return not [p for p in data_root.iterdir() if p.name.startswith(".neu-cls")]


def test_import_neu_from_folder(neu_download, tmp_path):
    dest = import_neu(neu_download, tmp_path)
    assert dest == tmp_path / "neu-cls"
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == sorted(NEU_CLASSES)
    assert all(len(list((dest / c).iterdir())) == 300 for c in NEU_CLASSES)
    assert _no_leftovers(tmp_path)
    imported = load_dataset("neu", data_root=tmp_path)
    assert imported.fingerprint == load_dataset(neu_download).fingerprint
    with pytest.raises(DataError, match="already exists"):
        import_neu(neu_download, tmp_path)


def test_import_neu_from_zip_with_wrapper_folder(neu_download, tmp_path):
    archive = zip_dir(neu_download, tmp_path / "neu.zip", prefix="NEU surface defect database/")
    dest = import_neu(archive, tmp_path / "data")
    assert load_dataset(dest).class_counts() == {c: 300 for c in NEU_CLASSES}
    assert _no_leftovers(tmp_path / "data")


def test_import_neu_refuses_incomplete_copy(neu_download, tmp_path):
    src = tmp_path / "src"
    make_neu(src, "folders", n=300, size=4)
    (src / "patches" / "Pa_7.png").unlink()
    with pytest.raises(DataError, match="patches 299"):
        import_neu(src, tmp_path / "data")
    assert not (tmp_path / "data" / "neu-cls").exists() and _no_leftovers(tmp_path / "data")


def test_import_neu_refuses_corrupt_image_and_bad_zip(tmp_path):
    src = tmp_path / "src"
    make_neu(src, "folders", n=300, size=4)
    (src / "crazing" / "Cr_5.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="Cr_5.png"):
        import_neu(src, tmp_path / "data")
    assert not (tmp_path / "data" / "neu-cls").exists() and _no_leftovers(tmp_path / "data")
    bad = tmp_path / "neu.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DataError, match="neu.zip"):
        import_neu(bad, tmp_path / "data")


def test_import_neu_overwrite_replaces(neu_download, tmp_path):
    (tmp_path / "neu-cls").mkdir()
    (tmp_path / "neu-cls" / "old.txt").write_text("old")
    dest = import_neu(neu_download, tmp_path, overwrite=True)
    assert not (dest / "old.txt").exists() and _no_leftovers(tmp_path)
