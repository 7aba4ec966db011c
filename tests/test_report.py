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


def test_report_rebuilds_a_target_runs_front_page_byte_for_byte(tmp_path, capsys):
    """``report`` on a --target-accuracy run (no config.json at its top) rebuilds the front page the
    search wrote, the same bytes every time (the SVGs carry no date and fixed ids)."""
    run = tmp_path / "neu-target-99.5"
    shutil.copytree(ROOT / "results" / "neu-target-99.5", run, ignore=shutil.ignore_patterns("budgets", "report.html"))
    assert main(["report", str(run)]) == 0
    first = (run / "report.html").read_bytes()
    page = first.decode()
    assert "target 99.5%" in page and page.count("<svg") == 3 and "Operating point" in page
    assert "10m" in page.split("</table>")[0]  # the front's table names the chosen budget's run
    assert main(["report", str(run)]) == 0 and (run / "report.html").read_bytes() == first
    (run / "summary.json").unlink()
    assert main(["report", str(run)]) == 2 and "not a search run folder" in capsys.readouterr().err
