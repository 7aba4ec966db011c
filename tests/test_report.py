"""The reference run's report rebuilds from what is committed and renders in a real browser."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from defect_nas.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_reference_report_rebuilds_and_reads_at_a_glance(tmp_path, capsys):
    run = tmp_path / "neu-100m"
    shutil.copytree(ROOT / "results" / "neu-100m", run, ignore=shutil.ignore_patterns("report.html", "*.png"))
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "{'" not in page.split("<h2>All trials</h2>")[0]  # no raw Python dicts in the text
    assert "Where the time went" in page and "56.0 min of 60" in page
    assert page.count("<svg") >= 4 and "<script" not in page


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="needs Debian's chromium for the headless screenshot")
def test_the_report_screenshots_in_headless_chromium(tmp_path):
    from PIL import Image

    run = tmp_path / "neu-100m"
    shutil.copytree(ROOT / "results" / "neu-100m", run, ignore=shutil.ignore_patterns("*.png"))
    p = subprocess.run(["bash", str(ROOT / "scripts" / "screenshot_report.sh"), str(run), "1000x1400"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    shot = Image.open(run / "report.png")
    assert shot.size == (1000, 1400) and len(shot.convert("L").getcolors(256) or []) > 50  # not a blank page
