"""The defect-nas command: rich or JSON output, and one-line errors with a non-zero exit."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from defect_nas.cli.main import main
from defect_nas.core.cost import macs, params
from defect_nas.search_spaces.base import Task, all_spaces

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_spaces_lists_every_space_and_prototype(capsys):
    code, out, _ = run(capsys, "spaces", "--json")
    rows = json.loads(out)["prototypes"]
    assert code == 0
    assert {r["space"] for r in rows} == {"lw", "residual", "vgg-student"}
    assert {r["prototype"] for r in rows} >= {"lw@0.35", "lw@0.75", "resnet-proto"}
    code, out, _ = run(capsys, "spaces")
    assert "lw@0.35" in out and "residual" in out


def test_sample_prints_a_fitted_spec_and_writes_it(capsys, tmp_path):
    target = tmp_path / "arch.json"
    code, out, _ = run(capsys, "sample", "--space", "residual", "--budget-flops", "100e6", "--input-size",
                       "200", "--seed", "0", "--json", "--out", str(target))
    r = json.loads(out)
    assert code == 0 and r["in_budget"] and 95e6 <= r["macs"] <= 105e6
    assert json.loads(target.read_text()) == r["spec"]
    code, out2, _ = run(capsys, "sample", "--space", "residual", "--seed", "0", "--json")
    assert json.loads(out2)["spec"] == r["spec"]  # same seed, same architecture


def test_cost_reports_analytic_fvcore_ptflops_and_params(capsys, tmp_path):
    spec = tmp_path / "lw.json"
    run(capsys, "sample", "--space", "lw", "--prototype", "lw@0.35", "--no-fit", "--out", str(spec))
    code, out, _ = run(capsys, "cost", str(spec), "--json")
    r = json.loads(out)
    assert code == 0
    proto = all_spaces()["lw"].prototypes(Task(1, 200, 6))["lw@0.35"]
    assert r["macs"] == r["macs_fvcore"] == macs(proto)
    assert r["params"] == params(proto) == 40_982 and r["macs_ptflops"] > r["macs"]
    code, out, _ = run(capsys, "cost", str(spec), "--input-size", "100")
    assert code == 0 and "MACs (fvcore)" in out


def test_netscore_command(capsys):
    code, out, _ = run(capsys, "netscore", "--accuracy", "98", "--params", "427776", "--macs", "97263435")
    assert code == 0 and "93.46 dB" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["cost", "missing.json"], "missing.json: no such file"),
        (["cost", "BAD"], "not valid JSON"),
        (["sample", "--space", "nope"], "unknown search space 'nope'"),
        (["sample", "--budget-flops", "1e3"], "even at minimum width and depth"),
        (["sample", "--budget-flops", "abc"], "'abc' must be a positive number"),
        (["sample", "--input-size", "8"], "--input-size: '8' must be a whole number from 32 to 512"),
        (["netscore", "--accuracy", "0", "--params", "1", "--macs", "1"], "accuracy must be a percentage"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(argv, message, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    argv = [str(bad) if a == "BAD" else a for a in argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "defect_nas", *argv], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=120)
    assert p.returncode == 2
    assert message in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_sample_does_not_clobber_the_output_file_on_error(capsys, tmp_path):
    target = tmp_path / "arch.json"
    target.write_text("keep me")
    code, _, _ = run(capsys, "sample", "--budget-flops", "1e3", "--out", str(target))
    assert code == 2 and target.read_text() == "keep me"


def test_search_config_file_with_typed_flags_overriding(tmp_path, capsys):
    import json as _json

    from defect_nas.cli.main import build_parser
    from defect_nas.cli.search import config_from
    from defect_nas.core.search_config import SearchConfig

    stored = {**SearchConfig(dataset="neu", time_budget_s=3600.0, top_k=6, strategy="tpe").to_dict(),
              "storage": "sqlite:///x/study.db", "study": "neu-100m", "device": "cpu"}
    path = tmp_path / "config.json"
    path.write_text(_json.dumps(stored))

    def parse(*argv):
        args = build_parser().parse_args(["search", *argv])
        args.argv = ["search", *argv]
        return config_from(args)

    same = parse("--config", str(path))
    assert same.time_budget_s == 3600.0 and same.top_k == 6 and same.strategy == "tpe"
    changed = parse("--config", str(path), "--strategy", "random", "--top-k=2")
    assert (changed.strategy, changed.top_k, changed.time_budget_s) == ("random", 2, 3600.0)
    assert main(["search", "--config", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err
