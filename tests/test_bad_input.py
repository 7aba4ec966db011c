"""Bad input: one line naming the problem and the fix, exit 2, and nothing already written changes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from defect_nas.cli.main import main
from defect_nas.core.search_config import SearchConfig

TINY = ["--teacher", "none", "--trials", "1", "--baselines", "none"]


@pytest.mark.parametrize("argv, message", [
    (["--proxy-input-size", "16"], "--proxy-input-size 16: choose 32..512"),
    (["--final-input-size", "-3"], "--final-input-size -3: choose 32..512"),
    (["--teacher-input-size", "4096"], "--teacher-input-size 4096: choose 32..512"),
    (["--dataset", ""], "--dataset is empty"),
    (["--min-accuracy", "100"], "--min-accuracy 100.0: a percentage below 100"),
    (["--explore-share", "0.9", "--promote-share", "0.2"], "sum to less than 1"),
])
def test_bad_search_flags_fail_before_any_work(argv, message, tmp_path, capsys):
    assert main(["search", *TINY, "--results", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "r").exists()  # nothing written


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def test_another_study_cannot_overwrite_an_existing_run_whatever_the_storage(tmp_path, capsys):
    from datagen import learnable_dataset
    from PIL import Image

    ds = learnable_dataset(classes=2, per_class=10, size=32)
    data = tmp_path / "data"
    for i, (img, label) in enumerate(zip(ds.images, ds.labels)):
        (data / ds.class_names[int(label)]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(data / ds.class_names[int(label)] / f"{i}.png")
    run = tmp_path / "r" / "existing"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({**SearchConfig(dataset=str(data), epochs=12).to_dict(),
                                                 "storage": "sqlite:///x.db", "study": "existing"}))
    (run / "summary.json").write_text('{"winner": {"name": "kept"}}')
    before = digests(run)
    argv = ["search", *TINY, "--dataset", str(data), "--budget-flops", "2e6", "--results", str(tmp_path / "r"),
            "--run", "existing", "--epochs", "1", "--min-epochs", "1",
            "--storage", f"sqlite:///{tmp_path / 'other.db'}"]
    assert main(argv) == 2
    assert "holds a search with other settings" in capsys.readouterr().err
    assert digests(run) == before
