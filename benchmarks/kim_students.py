"""Kim et al.'s student table on NEU: VGG-style students at 1/2 .. 1/128 of VGG16's filters, taught
by L2 regression on the logits (their eq. 1) of a transfer-learned and of a scratch-trained teacher.

    DEFECT_NAS_DATA=../shared/datasets .venv/bin/python benchmarks/kim_students.py \
        [--students all:2 ... all:128 upper:32 upper:64 upper:128] [--teachers imagenet scratch-bn] \
        [--seeds 0 1 2] \
        [--input-size 64] [--epochs 30] [--teacher-epochs 30] [--scratch-epochs 60] [--jobs 2]
    .venv/bin/python benchmarks/kim_students.py --only table

Students are their Table 1: five conv3 + max-pool layers, FC-4096, FC-classes, no batch norm
(``search_spaces.vgg_student.student``), with VGG16's widths (64, 128, 256, 512, 512) divided as the
paper did: ``all:R`` divides every width by R (they went to 1/16, then saw a drop at 1/32);
``upper:R`` keeps C1-C3 at 1/16 and divides only C4, C5 by R (their final (4, 8, 16, 4, 4) is
``upper:128``). Widths are at least 1.
Each is trained by the trainer's recipe with ``kd="l2"`` and ``kd_alpha=1``: the labels play no
part, the student only regresses the teacher's logits of each training image and view, as in
the paper. Teachers are this repository's cached VGG16s (``evaluators.teacher``) trained at the
students' input size: ``imagenet`` (transfer, ``--teacher-epochs``) and ``scratch-bn`` (random
weights, VGG16 with batch norm so that it learns at all, ``--scratch-epochs``). Each training is
appended to ``results/benchmarks/kim_students_runs.csv`` as it ends (the benchmark resumes and can
be split across sessions); the table is ``results/benchmarks/kim_students.{csv,json}``, plotted
in ``kim_students.html``.
The paper's finding on DAGM: transfer-taught students keep their accuracy down to 1/128 of the
filters; scratch-taught ones lose more than 5 points.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from resumable import read_runs, run_jobs  # noqa: E402

from defect_nas.core.files import read_csv_rows, write_csv, write_json  # noqa: E402
from defect_nas.measure.runinfo import environment  # noqa: E402

FIELDS = ["teacher", "teacher_test_accuracy", "student", "widths", "input_size", "epochs", "seed", "params", "macs",
          "val_accuracy", "test_accuracy", "best_epoch", "train_seconds", "device"]
KEY = ("teacher", "student", "input_size", "epochs", "seed")
STUDENTS = ("all:2", "all:4", "all:8", "all:16", "all:32", "all:64", "all:128", "upper:32", "upper:64", "upper:128")
VGG_WIDTHS = (64, 128, 256, 512, 512)
PAPER = ("Kim et al. 2020 (DAGM): students taught by the transfer-learned VGG16 keep their accuracy down to 1/128 of "
         "the filters; students of the scratch-trained VGG16 lose more than 5 points")


def teacher_cfg(init: str, input_size: int, epochs: int, weights_file: str | None = None):
    from defect_nas.evaluators.teacher import TeacherConfig

    return TeacherConfig(init=init, epochs=epochs, input_size=input_size,
                         weights_file=weights_file if init == "imagenet" else None)


def widths(student: str) -> tuple[int, ...]:
    """``all:R``: every width / R; ``upper:R``: C1-C3 / 16, C4-C5 / R."""
    how, _, r = student.partition(":")
    ratios = [int(r)] * 5 if how == "all" else [16, 16, 16, int(r), int(r)]
    return tuple(max(1, w // q) for w, q in zip(VGG_WIDTHS, ratios))


def one(init: str, t_epochs: int, student_name: str, input_size: int, epochs: int, seed: int, device: str,
        t_weights: str | None = None) -> dict:
    """One student in a worker process (1 thread on the CPU), its teacher loaded from the cache."""
    from defect_nas.core.cost import cost
    from defect_nas.data import load_dataset, make_split
    from defect_nas.evaluators.run import train_spec
    from defect_nas.evaluators.runtime import Runtime
    from defect_nas.evaluators.teacher import ensure_teacher
    from defect_nas.evaluators.trainer import TrainConfig
    from defect_nas.search_spaces.base import Task
    from defect_nas.search_spaces.vgg_student import student

    runtime = Runtime(device=device, threads=1).apply()
    ds = load_dataset("neu")
    split = make_split(ds, seed=0)
    teacher = ensure_teacher(ds, split, teacher_cfg(init, input_size, t_epochs, t_weights), log=lambda m: None)
    spec = student(Task(ds.images.shape[1], input_size, len(ds.class_names)), widths(student_name),
                   name=f"kim/{student_name}")
    cfg = TrainConfig(epochs=epochs, input_size=input_size, kd="l2", kd_alpha=1.0, seed=seed)
    s = train_spec(spec, ds, split, cfg, teacher, latency=False, runtime=runtime).summary
    c = cost(spec)
    return {"teacher": init, "teacher_test_accuracy": teacher.test_accuracy, "student": student_name,
            "widths": "-".join(map(str, widths(student_name))), "input_size": input_size, "epochs": epochs,
            "seed": seed,
            "params": c.params, "macs": c.macs, "val_accuracy": s["val_accuracy"],
            "test_accuracy": s["test_accuracy"], "best_epoch": s["best_epoch"],
            "train_seconds": round(s["train_seconds"], 1), "device": runtime.device}


def write_table(out: Path) -> pd.DataFrame:
    df = read_runs(out / "kim_students_runs.csv",
                   ("test_accuracy", "teacher_test_accuracy", "params", "macs", "train_seconds"))
    if df.empty:
        return df
    order = {s: i for i, s in enumerate(STUDENTS)}
    df = df.sort_values(["teacher", "student"], key=lambda c: c.map(order) if c.name == "student" else c)
    table = df.groupby(["teacher", "student", "widths", "input_size", "epochs"], sort=False).agg(
        seeds=("seed", "count"), test_mean=("test_accuracy", "mean"), test_std=("test_accuracy", "std"),
        test_min=("test_accuracy", "min"), teacher_test=("teacher_test_accuracy", "first"),
        params=("params", "first"), macs=("macs", "first"),
        train_seconds_median=("train_seconds", "median"), device=("device", "first")).reset_index()
    table["drop_from_teacher"] = table.teacher_test - table.test_mean
    rows = table.astype(object).where(table.notna(), None).to_dict("records")
    write_csv(out / "kim_students.csv", rows)
    write_json(out / "kim_students.json", {
        "table": rows, "paper": PAPER,
        "protocol": {"students": "Kim et al. Table 1: conv3+maxpool x5, FC-4096, no batch norm; all:R = every "
                                 "width of VGG16's / R, upper:R = C1-C3 / 16 and C4-C5 / R (widths >= 1)",
                     "train": "TrainConfig defaults (AdamW 2e-3, cosine, 8 views), kd l2 (eq. 1), kd_alpha 1: "
                              "no label term", "split": "seed-0 split 1200/240/360",
                     "target": "test accuracy of the best-validation epoch"},
        "runs": df.to_dict(orient="records"), "environment": environment(None)})
    write_page(table, out / "kim_students.html")
    return table


def write_page(table: pd.DataFrame, path: Path) -> Path:
    """kim_students.html: test accuracy against the filter ratio, one line per teacher and fidelity
    (mean and min of the seeds), and the table; self-contained like a run's report.html."""
    import html

    import matplotlib.pyplot as plt

    from defect_nas.nas.report import html_table, svg_of

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for (teacher, size, device), g in table.groupby(["teacher", "input_size", "device"], sort=False):
        for how, marker, style in (("all", "o", "-"), ("upper", "s", "--")):
            part = g[g.student.str.startswith(how + ":")]
            if part.empty:
                continue
            ratio = part.student.str.split(":").str[1].astype(int)
            label = f"{teacher}-taught, {how} / R, {size} px ({device}); teacher {part.teacher_test.iloc[0]:.2f}%"
            line = ax.errorbar(ratio, part.test_mean, yerr=part.test_std.fillna(0), marker=marker, linestyle=style,
                               capsize=3, label=label)
            ax.scatter(ratio, part.test_min, marker="_", color=line[0].get_color())
    ax.set_xscale("log", base=2)
    ax.set_xlabel("filter ratio R (VGG16's widths / R; upper: C4-C5 only, C1-C3 at / 16)")
    ax.set_ylabel("NEU test accuracy (%), mean +- std of seeds; dash: min")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    cols = [("teacher", "teacher"), ("student", "student"), ("widths", "widths"), ("input_size", "px"),
            ("epochs", "epochs"), ("seeds", "seeds"), ("test_mean", "test mean %"), ("test_std", "std"),
            ("test_min", "min"), ("teacher_test", "teacher %"), ("macs", "MACs"), ("device", "device")]
    rows = table.astype(object).where(table.notna(), None).to_dict("records")
    page = ("<!doctype html><meta charset=utf-8><title>Kim et al.'s student table on NEU</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{padding:2px 8px;"
            "text-align:right}svg{max-width:100%;height:auto}</style>"
            "<h1>Kim et al.'s student table on NEU</h1>"
            f"<p>{html.escape(PAPER)}.</p><p>Students regress the teacher's logits (L2, no label term); "
            "each point is the test accuracy (360 images, seed-0 split) of the best-validation epoch. "
            "Rows at different input sizes or devices are different fidelities: compare teachers within one.</p>"
            f"{svg_of(fig)}{html_table(rows, cols)}")
    path.write_text(page)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", nargs="+", default=list(STUDENTS), choices=STUDENTS)
    ap.add_argument("--teachers", nargs="+", default=["imagenet", "scratch-bn"], choices=["imagenet", "scratch-bn"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--teacher-epochs", type=int, default=30, help="the transfer teacher's epochs")
    ap.add_argument("--scratch-epochs", type=int, default=60, help="the scratch teacher's epochs")
    ap.add_argument("--jobs", type=int, default=2, help="students at once, one thread each")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--teacher-weights", help="the transfer teacher's VGG16 weights file (default: found offline)")
    ap.add_argument("--only", choices=["teachers", "table"])
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_epochs = {"imagenet": args.teacher_epochs, "scratch-bn": args.scratch_epochs}
    if args.only != "table":
        from defect_nas.data import load_dataset, make_split
        from defect_nas.evaluators.runtime import Runtime
        from defect_nas.evaluators.teacher import ensure_teacher

        ds = load_dataset("neu")
        split = make_split(ds, seed=0)
        for init in args.teachers:  # trained (or loaded) once, before the students read the cache
            t = ensure_teacher(ds, split, teacher_cfg(init, args.input_size, t_epochs[init], args.teacher_weights),
                               runtime=Runtime(device=args.device).apply())
            print(f"teacher {init}: {t.provenance}, test {t.test_accuracy:.2f}%, {t.seconds:.0f} s", flush=True)
    if args.only is None:
        runs_csv = out / "kim_students_runs.csv"
        have = {tuple(r[k] for k in KEY) for r in read_csv_rows(runs_csv)}
        jobs = [(init, t_epochs[init], st, args.input_size, args.epochs, seed) for seed in args.seeds
                for init in args.teachers for st in args.students
                if (init, st, str(args.input_size), str(args.epochs), str(seed)) not in have]
        run_jobs(one, jobs, runs_csv, FIELDS, args.jobs, (args.device, args.teacher_weights))
    table = write_table(out)
    if not table.empty:
        print(PAPER)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(json.dumps({"out": str(out)}))


if __name__ == "__main__":
    main()
