"""``defect-nas explain``: heat maps of what drove a decision, and the deletion test over a run's test split.

    defect-nas explain results/neu-100m/winner IMAGE... [--out DIR] [--method gradcam|saliency]
    defect-nas explain results/neu-100m [--method gradcam]     # the recorded test split -> RUN/explain/

Images go through the same loading as ``predict`` (``data.preprocess``), so a map shows
what the deployed model saw.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from defect_nas.cli.numbers import int_in
from defect_nas.cli.output import console, print_json
from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import writable_folder, write_csv, write_json, write_text_atomic
from defect_nas.core.runfolder import RunFolder


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="heat maps of what drove each decision (Grad-CAM), and a deletion test")
    p.add_argument("target", help="a model folder (RUN/winner) with IMAGE..., or a run folder alone: its test split")
    p.add_argument("images", nargs="*")
    p.add_argument("--method", default="gradcam", help="gradcam (last conv stage) or saliency (input gradient)")
    p.add_argument("--out", help="folder for the maps (default: ./explanations, or RUN/explain for a run)")
    p.add_argument("--steps", type=int_in(1, 1000), default=20,
                   help="deletion test: fractions of pixels removed, 0..1")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> None:
    target = Path(args.target)
    if args.images:
        _explain_files(target, args)
        return
    if not RunFolder(target).has_split() or not RunFolder(target).winner.is_dir():
        raise DefectNasError(f"{target}: give IMAGE... to explain, or a run folder (with split.json and winner/) "
                             "to explain its test split")
    _explain_test_split(target, args)


def _load(model_dir: Path, files: list[str]):
    import torch

    from defect_nas.data.preprocess import model_input, read_for_model
    from defect_nas.deploy.model import load_model

    model, spec, labels = load_model(model_dir)
    x = torch.cat([read_for_model(f, spec.in_channels, spec.input_size) for f in files])
    return model, labels, x, model_input(x)


def _explain_files(model_dir: Path, args: argparse.Namespace) -> None:
    from defect_nas.inspection.explain import attribute, overlay

    model, labels, x8, x = _load(model_dir, args.images)
    maps, probs = attribute(model, x, args.method)
    out = writable_folder(args.out or "explanations", "--out")
    rows = []
    for i, path in enumerate(args.images):
        k = int(probs[i].argmax())
        png = out / f"{Path(path).stem}-{args.method}.png"
        overlay(x8[i], maps[i]).save(png)
        rows.append({"path": path, "label": labels[k], "probability": float(probs[i, k]), "map": str(png)})
    if args.json:
        print_json(rows)
        return
    for r in rows:
        console.print(f"{r['path']}: [bold]{r['label']}[/] ({r['probability']:.3f}) -> {r['map']}")


def _explain_test_split(run: Path, args: argparse.Namespace) -> None:
    from defect_nas.data.preprocess import model_input, recorded_test
    from defect_nas.deploy.model import load_model
    from defect_nas.inspection.explain import area_under, attribute, deletion_curves, overlay

    model, spec, labels = load_model(RunFolder(run).winner)
    rec = recorded_test(run, spec.input_size, labels)  # the test pixels as training scored them
    files, x8, truth = rec.files, rec.x8, rec.truth
    x = model_input(x8)
    maps, probs = attribute(model, x, args.method)
    pred = probs.argmax(1)
    curves = deletion_curves(model, x, pred, maps, steps=args.steps)
    out = Path(args.out or run / "explain")
    writable_folder(out / "maps", "--out")
    shown = []
    for c, label in enumerate(labels):  # one correct image and every misclassified one, per class
        idx = [i for i in range(len(files)) if truth[i] == c]
        right = [i for i in idx if pred[i] == c][:1]
        wrong = [i for i in idx if pred[i] != c]
        for i in right + wrong:
            safe = files[i].replace("/", "_").replace("#", "_").replace(",", "-")  # unique per file
            png = out / "maps" / f"{Path(safe).stem}-{args.method}.png"
            overlay(x8[i], maps[i]).save(png)
            shown.append({"file": files[i], "label": label, "predicted": labels[int(pred[i])],
                          "probability": float(probs[i, pred[i]]), "map": str(png.relative_to(out))})
    auc = {k: area_under(curves["fractions"], curves[k]) for k in ("attribution", "random")}
    result = {"run": str(run), "method": args.method, "images": len(files),
              "accuracy": float((pred == truth).float().mean() * 100),
              "deletion_auc": auc, "deletion_fill": "each image's mean pixel value", "steps": args.steps,
              "curve": {"fractions": curves["fractions"].tolist(),
                        "attribution": curves["attribution"].mean(0).tolist(),
                        "random": curves["random"].mean(0).tolist()},
              "shown": shown}
    write_json(out / "deletion.json", result)
    write_csv(out / "deletion.csv", [{"fraction": f, "attribution": a, "random": r} for f, a, r in
                                     zip(*(result["curve"][k] for k in ("fractions", "attribution", "random")))])
    write_text_atomic(out / "explain.html", _page(result))
    if args.json:
        print_json({k: v for k, v in result.items() if k != "shown"})
        return
    console.print(f"{len(files)} test images, {result['accuracy']:.2f}% correct; deletion AUC (lower: the map "
                  f"found what the decision rests on): {args.method} [bold]{auc['attribution']:.3f}[/] vs random "
                  f"{auc['random']:.3f}; {len(shown)} maps and explain.html in {out}")


def _page(r: dict) -> str:
    """explain.html: the deletion curve (inline SVG) and the maps, one correct + every error per class."""
    fr, at, rd = r["curve"]["fractions"], r["curve"]["attribution"], r["curve"]["random"]

    def path(ys: list[float]) -> str:
        return " ".join(f"{'M' if i == 0 else 'L'}{40 + 400 * f:.1f},{220 - 200 * y:.1f}" for i, (f, y) in
                        enumerate(zip(fr, ys)))

    svg = (f'<svg width="460" height="250" font-size="11"><rect x="40" y="20" width="400" height="200" '
           f'fill="none" stroke="#999"/><path d="{path(at)}" fill="none" stroke="#c00" stroke-width="2"/>'
           f'<path d="{path(rd)}" fill="none" stroke="#06c" stroke-width="2" stroke-dasharray="4"/>'
           f'<text x="45" y="235">0</text><text x="420" y="235">1: fraction of pixels removed</text>'
           f'<text x="5" y="25">p=1</text><text x="5" y="220">0</text>'
           f'<text x="250" y="40" fill="#c00">{r["method"]} order (AUC {r["deletion_auc"]["attribution"]:.3f})</text>'
           f'<text x="250" y="55" fill="#06c">random order (AUC {r["deletion_auc"]["random"]:.3f})</text></svg>')
    cells = "".join(
        f'<figure><img src="{s["map"]}" width="200"><figcaption>{s["file"]}<br>true {s["label"]}, predicted '
        f'<b style="color:{"#080" if s["label"] == s["predicted"] else "#c00"}">{s["predicted"]}</b> '
        f'({s["probability"]:.2f})</figcaption></figure>' for s in r["shown"])
    return (f"<!doctype html><meta charset='utf-8'><title>explanations of {r['run']}</title>"
            "<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;margin:6px;"
            "font-size:12px;width:200px}</style>"
            f"<h1>What drove the winner's decisions ({r['method']})</h1>"
            f"<p>{r['images']} test images of {r['run']}, {r['accuracy']:.2f}% correct. Deletion test: the "
            "probability of the predicted class as pixels are replaced by the image's mean, most-attributed "
            "first (red) or in random order (blue), averaged over the test split; a map that found what the "
            "decision rests on makes the red curve fall first.</p>"
            f"{svg}<h2>One correct image and every error, per class</h2>{cells}")
