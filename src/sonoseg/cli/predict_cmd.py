"""``sonoseg predict``: segment DICOM / NIfTI / image files with a model (default: the shipped one)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sonoseg.cli._common import TENTATIVE_OPTION, THREADS_OPTION, console, error_line, frame_progress, handle_errors, note_line, parse_tta
from sonoseg.cli.measure_cmd import CONTOUR_HELP, SPACING_FILE_HELP, SPACING_HELP
from sonoseg.infer.options import PredictOptions


def run_predict(inputs, out, options: PredictOptions, strict: bool = False, progress_bars: bool = True,
                show_withheld: bool = False) -> dict:
    from rich.table import Table

    from sonoseg.infer.default_model import sample_dicom_dir
    from sonoseg.infer.run import predict_inputs

    if not inputs:
        inputs = [sample_dicom_dir()]
        console.print(f"no inputs given: using the shipped sample DICOMs in {inputs[0]}")
    with frame_progress(progress_bars) as cb:
        payload = predict_inputs(list(inputs), out, options, log=lambda m: None, progress=cb, notify=note_line)
    rows = [r for r in payload["results"] if r["ok"]]
    bio = any(r["summary"].get("biometry") for r in rows)
    table = Table(title=f"sonoseg predict -> {out}")
    has_class = bool(payload.get("class_names"))
    cols = ["input", "frames"] + (["class", "p"] if has_class else []) + ["structures", "largest area", "max diameter"] \
        + (["HC", "BPD", "OFD"] if bio else []) + ["confidence", "in scope", "SEG"]
    for c in cols:
        table.add_column(c, justify="left" if c in ("input", "class") else "right")
    for r in rows:
        s = r["summary"]
        table.add_row(Path(r["input"]).name, str(r["frames"]), *_cells(s, has_class, bio, show_withheld),
                      {True: "yes", False: "[bold red]NO[/]", None: "n/a"}[s.get("in_scope")], "yes" if r.get("seg") else "-")
    console.print(table)
    for r in payload["results"]:
        if r.get("status", "ok" if r["ok"] else "failed") != "ok":
            error_line(r["error"])
        for w in r.get("warnings") or []:
            console.print(f"[yellow]warning:[/] {Path(r['input']).name}: {w}", soft_wrap=True)
    for r in rows:
        if r["summary"].get("in_scope") is False:
            console.print(f"[yellow]{Path(r['input']).name}: out of scope, not a finding: {r['summary'].get('scope_reason')}[/]",
                          soft_wrap=True)
    if payload.get("n_out_of_scope"):
        console.print(f"[yellow]{payload['n_out_of_scope']} input(s) out of scope: no class, probability or size is "
                      "shown for them" + (" (withheld values marked)" if show_withheld else
                                          "; --show-withheld prints them, marked") + ".[/]", soft_wrap=True)
    if payload.get("n_not_images"):
        from collections import Counter

        from sonoseg.infer.sop_class import describe_skipped

        console.print(f"skipped {describe_skipped(Counter(payload['not_images']))}: only image storage SOP classes "
                      "are segmented")
    units = {r["summary"].get("spacing_source") or "none (sizes in px)" for r in rows}
    console.print(f"pixel spacing from: {', '.join(sorted(units))}" if rows else "")
    partial, resumed = payload.get("n_partial", 0), payload.get("n_resumed", 0)
    console.print(f"{payload['n_ok']} ok, " + (f"{partial} partial, " if partial else "") + f"{payload['n_failed']} failed"
                  + (f" ({resumed} reused from the previous run)" if resumed else "")
                  + f"; model {payload.get('model_version')}; results in {Path(out) / 'results.json'}")
    if payload["n_ok"] + partial == 0 or (strict and (payload["n_failed"] or partial)):
        raise typer.Exit(1)
    return payload


def _cells(s: dict, has_class: bool, bio: bool, show_withheld: bool) -> list[str]:
    """The class, size and confidence cells of one row. Out of scope: "out of scope" and dashes, or
    with ``show_withheld`` the withheld values, each marked "(withheld)"."""
    out_of_scope = s.get("in_scope") is False
    if out_of_scope and not show_withheld:
        n = (2 if has_class else 0) + 3 + (3 if bio else 0) + 1
        return (["out of scope"] if has_class else []) + ["-"] * (n - (1 if has_class else 0))
    v = {**s, **(s.get("withheld") or {})} if out_of_scope else s
    mark = (lambda x: f"{x} (withheld)" if x != "-" else x) if out_of_scope else (lambda x: x)
    unit = v.get("unit", "px")
    cells = []
    if has_class:
        cls = v.get("class")
        p = (v.get("class_probabilities") or {}).get(cls)
        cells = [str(cls or "-") + (" (suspicious)" if v.get("suspicious") else ""), f"{p:.2f}" if p is not None else "-"]
    cells += [str(v.get("max_structures_per_frame", "")), f"{v.get('max_area') or 0:.1f} {unit}²",
              f"{v.get('max_diameter') or 0:.1f} {unit}"]
    if bio:
        b = v.get("biometry") or {}
        cells += [f"{b[k]:.1f} {unit}" if b.get(k) is not None else "-" for k in ("hc", "bpd", "ofd")]
    conf = v.get("confidence")
    cells.append("-" if conf is None else f"{conf:.2f}")
    return [mark(c) for c in cells]


def register(app: typer.Typer) -> None:
    @app.command("predict")
    @handle_errors
    def predict_cmd(
        inputs: List[Path] = typer.Argument(None, help="DICOM/NIfTI/image files or folders (default: shipped samples)."),
        out: Path = typer.Option(Path("predictions"), "--out", "-o", help="Output folder."),
        model: Optional[Path] = typer.Option(None, "--model", "-m", help="Trained model: checkpoint .pt, .onnx, .ts, or fast | accurate | v3 (default: fast)."),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config: its measure/postprocess sections (e.g. configs/fetal_head_biometry.yaml)."),
        backend: str = typer.Option("auto", help="auto (fastest backend that is exact on this CPU) | torch | "
                                    "torch-compile | onnx | onnx-int8"),
        threads: Optional[int] = THREADS_OPTION,
        batch_size: int = typer.Option(8, help="Frames per inference batch (cine is streamed)."),
        threshold: Optional[float] = typer.Option(None, "--threshold", min=0.0, max=1.0, help="Foreground probability cut-off (default: the model's)."),
        suspicious_threshold: Optional[float] = typer.Option(
            None, "--suspicious-threshold", min=0.0, max=1.0,
            help="Lesion models: flag a found lesion suspicious when P(the model's suspicious class, e.g. malignant) "
                 "reaches this (default: the model's operating point)."),
        spacing: Optional[str] = typer.Option(None, "--spacing", help=SPACING_HELP),
        spacing_file: Optional[Path] = typer.Option(None, "--spacing-file", help=SPACING_FILE_HELP),
        contour: Optional[str] = typer.Option(None, "--contour", help=CONTOUR_HELP),
        biometry: Optional[bool] = typer.Option(None, "--biometry/--no-biometry", help="HC/BPD/OFD of the largest structure, ellipse on the overlay."),
        ellipse_fit: Optional[bool] = typer.Option(None, "--ellipse-fit/--no-ellipse-fit", help="Replace each structure by its fitted ellipse (elliptical structures)."),
        temporal_window: Optional[int] = typer.Option(None, "--temporal-window", min=1, help="Cine: average probabilities over this many frames (1 = off)."),
        video: bool = typer.Option(False, "--video", help="Cine: also write an overlay video (animated WebP)."),
        domain: bool = typer.Option(True, "--domain-check/--no-domain-check", help="Flag inputs unlike the model's training images."),
        show_withheld: bool = typer.Option(False, "--show-withheld", help="Out-of-scope inputs: also print the class, "
                                           "probability and sizes withheld for them, marked (not findings)."),
        seg: bool = typer.Option(True, "--seg/--no-seg", help="Write a DICOM SEG for DICOM inputs (not for out-of-scope inputs)."),
        overlay_sc: bool = typer.Option(False, "--overlay-sc", help="DICOM inputs: also the overlay as a DICOM Secondary "
                                                                    "Capture, for viewers without SEG support."),
        keep_largest: Optional[bool] = typer.Option(None, "--keep-largest/--no-keep-largest", help="Keep only the largest component (default: the model's setting)"),
        min_size: Optional[int] = typer.Option(None, help="Remove components smaller than this many pixels (default: the model's setting)"),
        fill_holes: Optional[bool] = typer.Option(None, "--fill-holes/--no-fill-holes", help="Fill holes in masks (default: the model's setting)"),
        tentative_outline: Optional[bool] = TENTATIVE_OPTION,
        tta: List[str] = typer.Option([], help="Test-time flips h and/or v, or none (default: the model's setting)."),
        strict: bool = typer.Option(False, help="Exit non-zero if any input failed."),
        progress_bars: bool = typer.Option(True, "--progress/--no-progress"),
        resume: bool = typer.Option(False, "--resume", "--skip-existing",
                                    help="Continue a batch in OUT: reuse inputs whose outputs a previous run finished "
                                         "(from OUT/results.jsonl)."),
    ) -> None:
        """Masks in original geometry, overlays, measurements (mm) and DICOM SEG; OUT/results.json lists all.

        A 3D model (config with a volume section) segments whole volumes: NIfTI files or DICOM series folders."""
        from sonoseg.infer.volume import is_3d_model

        if is_3d_model(model):
            from sonoseg.cli.volume_cmds import run_predict_3d

            run_predict_3d(inputs, out, model, threads, seg, strict, keep_largest)
            return
        options = PredictOptions(
            backend=backend, threads=threads, threshold=threshold, keep_largest=keep_largest, min_size=min_size,
            fill_holes=fill_holes, tentative_outline=tentative_outline, tta=parse_tta(tta), model=model, config=config,
            batch_size=batch_size, write_seg=seg,
            overlay_sc=overlay_sc, video=video, domain=domain, resume=resume, spacing=spacing, spacing_file=spacing_file,
            contour=contour, biometry=biometry, ellipse_fit=ellipse_fit, temporal_window=temporal_window,
            suspicious_threshold=suspicious_threshold)
        run_predict(inputs, out, options, strict, progress_bars, show_withheld)
