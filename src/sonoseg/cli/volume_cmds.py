"""The 3D branches of ``sonoseg predict`` and ``sonoseg evaluate`` (chosen from the model's config):
thin table printing over :mod:`sonoseg.infer.volume_run` and :mod:`sonoseg.evaluate.volume`."""

from __future__ import annotations

from pathlib import Path

import typer

from sonoseg.cli._common import console, error_line


def run_predict_3d(inputs, out: Path, model: Path, threads, seg: bool, strict: bool, keep_largest=None) -> dict:
    from rich.table import Table

    from sonoseg.infer.volume_run import predict_volumes

    if not inputs:
        raise typer.BadParameter("a 3D model needs input volumes (NIfTI files or DICOM series folders)")
    payload = predict_volumes(list(inputs), out, model, threads=threads, write_seg=seg, log=lambda m: None,
                              keep_largest=keep_largest)
    t = Table(title=f"sonoseg predict (3D) -> {out}")
    for c in ("input", "label", "organ", "volume mL", "pieces", "bbox R x A x S mm", "max axial diameter mm"):
        t.add_column(c, justify="left" if c in ("input", "organ") else "right")
    for r in payload["results"]:
        if not r["ok"]:
            continue
        for o in r["organs"]:  # bbox and diameter: the largest piece (sonoseg.infer.volume_measure)
            bbox = "x".join(f"{v:.0f}" for v in o["bbox_mm"]) if o["bbox_mm"] else "-"
            t.add_row(Path(r["input"]).name, str(o["label"]), o["name"], f"{o['volume_ml']:.1f}", str(o["components"]),
                      bbox, f"{o['axial_diameter_mm']:.1f}")
    console.print(t)
    for r in payload["results"]:
        if not r["ok"]:
            error_line(r["error"])
        for w in r.get("warnings") or []:
            console.print(f"[yellow]warning:[/] {Path(r['input']).name}: {w}", soft_wrap=True)
        if r.get("ok"):
            console.print(f"labels: {r['outputs']['labels']} (tables: {r['outputs']['label_tables']['itksnap']}, "
                          f"{r['outputs']['label_tables']['slicer']})", soft_wrap=True)
        if r.get("seg"):
            console.print(f"DICOM SEG: {r['seg']}")
    console.print(f"{payload['n_ok']} ok, {payload['n_failed']} failed; model {payload['model_version']}; "
                  f"results in {Path(out) / 'results.json'}")
    if payload["n_ok"] == 0 or (strict and payload["n_failed"]):
        raise typer.Exit(1)
    return payload


def run_evaluate_3d(dataset: Path, model: Path, out: Path, split_file, split: str, threads, n_boot: int,
                    keep_largest=None) -> dict:
    from rich.table import Table

    from sonoseg.evaluate.volume import evaluate_volumes

    result = evaluate_volumes(dataset, model, out, split_file, split, threads, n_boot,
                              log=lambda m: console.print(m, highlight=False), keep_largest=keep_largest)
    t = Table(title=f"{result['n_cases']} volume(s): per organ, mean [95% CI]")
    for c in ("organ", "Dice", "IoU", "HD95 mm", "ASSD mm", "volume error mL", "n"):
        t.add_column(c, justify="left" if c == "organ" else "right")

    def cell(a):
        return "-" if not a or a["n"] == 0 else f"{a['mean']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]"

    for organ, m in result["organs"].items():
        if organ.startswith("_"):
            continue
        t.add_row(organ, *(cell(m[k]) for k in ("dice", "iou", "hd95_mm", "assd_mm", "volume_error_ml")), str(m["n_cases"]))
    console.print(t)
    mo = result["organs"].get("_mean_over_organs", {}).get("dice")
    if mo and mo["n"]:
        console.print(f"mean organ Dice {mo['mean']:.4f}")
    console.print(f"[green]wrote[/] {out / 'metrics.json'}, {out / 'per_case.csv'}, {out / 'report.html'}")
    return result
