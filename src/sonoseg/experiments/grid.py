"""Seed 004's comparison: architectures x encoders, each trained with and without augmentation using
one recipe and scored on the same split, plus the cost of each network (parameters, GFLOPs, training
time, int8 frames/s) and a Pareto figure of Dice against speed.

"Augmented" cells use seed 004's augmentation -- random shift up to +-20% of the size and scale 0.5-2x
-- with the recipe's other augmentations off; "initial" cells train without augmentation. (Seed
004's "accuracy" was a soft Dice; here accuracy is pixel accuracy and Dice is reported separately.)
Frames/s are the network alone through the int8 path predict's fast mode uses (ONNX export, static
int8, onnxruntime), timed on this machine's CPU at the budget's grid size -- the same measurement as
``bench/student_speed.py``; latency does not depend on the weights, so it is timed once per network.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional, Sequence

from sonoseg.errors import ConfigError
from sonoseg.experiments.options import AUGMENT, GridOptions
from sonoseg.experiments.study import (Cell, Study, StudyResult, labelled_assignment, read_record, recipe, run_cells,
                                       safe_id, source_split)
from sonoseg.experiments.tables import (failed_section, fmt_ci, fmt_num, markdown_table, metric_cols, new_figure,
                                        save_figure, write_outputs)

ARCH_TITLES = {"unet_smp": "U-Net", "unetplusplus": "U-Net++", "manet": "MANet", "linknet": "LinkNet", "fpn": "FPN",
               "pspnet": "PSPNet", "pan": "PAN", "deeplabv3": "DeepLabV3", "deeplabv3plus": "DeepLabV3+", "unet": "U-Net (plain)"}
SEED004_AUGMENT = ["augment.hflip=0", "augment.vflip=0", "augment.rotate_limit=0", "augment.shift_limit=0.2",
                   "augment.scale_range=[0.5, 2.0]", "augment.brightness_contrast_p=0", "augment.gauss_noise_p=0",
                   "augment.speckle_p=0", "augment.gamma_p=0", "augment.blur_p=0"]
METRIC_TITLES = (("accuracy", "Accuracy"), ("iou", "mIoU"), ("recall", "Recall"), ("dice", "Dice"))


def grid_base(base: dict) -> dict:
    """The recipe with its model section reduced to what every architecture shares (channels, classes,
    class head): the recipe's encoder, weights and architecture parameters belong to its own network."""
    b = copy.deepcopy(base)
    m = b.get("model") or {}
    b["model"] = {k: m[k] for k in ("in_channels", "classes", "classification") if k in m}
    return b


def grid_cells(split: Path, archs: Sequence[str], encoders: Sequence[str], augment: str) -> list[Cell]:
    """One cell per architecture x encoder x augmentation (``augment``: a key of :data:`AUGMENT`)."""
    cells = []
    for arch in archs:
        for enc in encoders:
            for aug in AUGMENT[augment]:
                cid = safe_id(arch, enc, "aug" if aug else "noaug")
                cells.append(Cell(cid, {"arch": arch, "encoder": enc, "augment": aug}, split,
                                  {"val": ("val", split), "test": ("test", split)},
                                  overrides=[f"model.name={arch}", f"model.encoder={enc}", f"augment.enabled={str(aug).lower()}"]))
    return cells


def gflops(model, size: tuple[int, int], in_channels: int) -> Optional[float]:
    """Forward-pass GFLOPs of one ``in_channels x H x W`` image (torch's FLOP counter: a multiply-add
    counts 2), None where the counter cannot trace the network."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        x = torch.zeros(1, in_channels, *size)
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model.eval()(x)
        return round(fc.get_total_flops() / 1e9, 3)
    except Exception:  # noqa: BLE001 - a cost figure must not fail the cell
        return None


def int8_fps(checkpoint: Path, threads: int, calib=None, iters: int = 30, max_seconds: float = 5.0) -> dict:
    """Network-only int8 frames/s of a trained model (export + static int8 + onnxruntime, via
    :func:`sonoseg.bench.benchmark.run_benchmark`); ``calib``: calibration grids (default: the
    shipped frames)."""
    from sonoseg.bench.benchmark import BenchmarkPlan, BenchModel, run_benchmark

    bm = BenchModel.from_source(checkpoint)
    plan = BenchmarkPlan(backends=("onnx-int8",), threads=(threads,), e2e=False, iters=iters, max_seconds=max_seconds,
                         isolate=False, warmup=2, min_iters=3)
    row = run_benchmark([bm], plan, calib_images=calib)[0]
    return {"fps_int8": row.get("fps"), "fps_threads": threads, "fps_status": row.get("status"),
            "fps_note": row.get("note") or None}


def _cost(study: Study, speed: bool, speed_iters: int):
    """The grid's per-cell extra: parameters, GFLOPs and (once per network) int8 frames/s."""

    def extra(cell: Cell, cell_dir: Path, res, cfg) -> dict:
        from sonoseg.models import count_parameters, create_model_from_config

        model = create_model_from_config(cfg.model, pretrained=False)
        out = {"params_m": round(count_parameters(model) / 1e6, 3),
               "gflops": gflops(model, tuple(cfg.preprocess.size), cfg.model.in_channels),
               "size": list(cfg.preprocess.size)}
        if speed:
            twin = read_record(cell_dir.parent / safe_id(cell.info["arch"], cell.info["encoder"],
                                                          "noaug" if cell.info["augment"] else "aug"))
            known = (twin or {}).get("extra", {}) if (twin or {}).get("status") == "ok" else {}
            if known.get("fps_int8") is not None and known.get("size") == out["size"]:
                out.update({k: known[k] for k in ("fps_int8", "fps_threads", "fps_status", "fps_note") if k in known})
            else:
                from sonoseg.export import split_grids

                study.log("  timing the int8 network")
                calib = [g for g, _ in split_grids(cfg.data.root, cfg.data.split_file, "train", cfg, n=32)]
                out.update(int8_fps(Path(res.best_checkpoint), study.threads or 1, calib, iters=speed_iters))
        return out

    return extra


def grid_table(records: list[dict], archs: Sequence[str], encoders: Sequence[str]):
    """Seed 004's layout: one row per (architecture, encoder); each metric for initial and augmented data."""
    import pandas as pd

    by = {(r["info"]["arch"], r["info"]["encoder"], r["info"]["augment"]): r for r in records}
    rows = []
    for arch in archs:
        for enc in encoders:
            row: dict = {"arch": arch, "encoder": enc}
            extra: dict = {}
            for aug, tag in ((False, "initial"), (True, "augmented")):
                r = by.get((arch, enc, aug))
                ok = r is not None and r["status"] == "ok"
                row.update(metric_cols(r if ok else {}, "test", f"{tag}", [m for m, _ in METRIC_TITLES]))
                row[f"{tag}_val_dice"] = (((r or {}).get("metrics") or {}).get("val") or {}).get("dice", {}).get("mean") if ok else None
                row[f"{tag}_train_min"] = round(r["train"]["seconds"] / 60, 2) if ok else None
                row[f"{tag}_status"] = None if r is None else r["status"]
                row[f"{tag}_reason"] = None if r is None else r.get("reason")
                if ok:
                    extra = {**r.get("extra", {}), **{k: v for k, v in extra.items() if v is not None}}
            row.update(params_m=extra.get("params_m"), gflops=extra.get("gflops"), fps_int8=extra.get("fps_int8"),
                       fps_threads=extra.get("fps_threads"))
            rows.append(row)
    return pd.DataFrame(rows)


def _markdown(df, study: Study, records, cpu: str) -> str:
    head = (f"# Architecture x encoder grid\n\nDataset `{study.dataset}`, one recipe, budget: {study.budget.describe()}. "
            "Test-set means (Dice, mIoU and recall over images with a lesion; pixel accuracy over all). "
            f"int8 frames/s: network only, {cpu}. Reduced budgets rank architectures but do not give their best Dice.\n\n")
    header = ["Architecture", "Encoder"]
    for _, title in METRIC_TITLES:
        header += [f"{title} (initial)", f"{title} (augmented)"]
    header += ["Params (M)", "GFLOPs", "Train min (initial / augmented)", "int8 frames/s"]
    body = []
    for r in df.to_dict("records"):
        line = [ARCH_TITLES.get(r["arch"], r["arch"]), r["encoder"]]
        for m, _ in METRIC_TITLES:
            line += [fmt_num(r[f"initial_{m}"], 3), fmt_num(r[f"augmented_{m}"], 3)]
        line += [fmt_num(r["params_m"], 2), fmt_num(r["gflops"], 2),
                 f"{fmt_num(r['initial_train_min'], 1)} / {fmt_num(r['augmented_train_min'], 1)}", fmt_num(r["fps_int8"], 0)]
        body.append(line)
    ci = markdown_table(["Architecture", "Encoder", "test Dice (initial)", "test Dice (augmented)"],
                        [[ARCH_TITLES.get(r["arch"], r["arch"]), r["encoder"],
                          fmt_ci(r["initial_dice"], r["initial_dice_lo"], r["initial_dice_hi"]),
                          fmt_ci(r["augmented_dice"], r["augmented_dice_lo"], r["augmented_dice_hi"])]
                         for r in df.to_dict("records")])
    return (head + markdown_table(header, body, ["l", "l"] + ["r"] * (len(header) - 2))
            + "\n## Dice with 95% bootstrap CIs\n\n" + ci + failed_section(records))


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both x and y (higher is better), by x."""
    idx = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front, best_y = [], float("-inf")
    for i in idx:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return sorted(front, key=lambda i: points[i][0])


def pareto_figure(df, path: Path) -> Optional[Path]:
    """Test Dice against int8 frames/s, one point per trained cell, the Pareto front joined."""
    pts, labels, aug = [], [], []
    for r in df.to_dict("records"):
        for tag in ("initial", "augmented"):
            if r.get("fps_int8") is not None and r.get(f"{tag}_dice") is not None:
                pts.append((float(r["fps_int8"]), float(r[f"{tag}_dice"])))
                labels.append(f"{ARCH_TITLES.get(r['arch'], r['arch'])}/{r['encoder']}")
                aug.append(tag == "augmented")
    if not pts:
        return None
    fig, (ax,) = new_figure(1, width=6.5, height=4.5)
    for flag, marker, name in ((False, "o", "initial data"), (True, "s", "augmented data")):
        sel = [p for p, a in zip(pts, aug) if a == flag]
        if sel:
            ax.scatter([p[0] for p in sel], [p[1] for p in sel], marker=marker, alpha=0.7, label=name)
    front = pareto_front(pts)
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], color="k", lw=1, label="Pareto front")
    for i in front:
        ax.annotate(labels[i], pts[i], fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("int8 frames/s (network only)")
    ax.set_ylabel("test Dice")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def grid_study(dataset: str | Path, out: str | Path, options: Optional[GridOptions] = None) -> StudyResult:
    """Run (or resume) the grid; writes results.csv/.md and pareto.png into ``out``."""
    dataset, root, o = Path(dataset), Path(out), options or GridOptions()
    src = source_split(dataset, o.split_file, root)
    assignment = labelled_assignment(dataset, src)
    for need in ("train", "val", "test"):
        if need not in assignment.values():
            raise ConfigError(f"{src}: split {need!r} is empty; the grid needs train, val and test images")
    archs, encoders = list(o.archs), list(o.encoders)
    cells = grid_cells(src, archs, encoders, o.augment)
    study = Study("grid", root, dataset, grid_base(recipe(o.config, o.log)), list(SEED004_AUGMENT), o,
                  params={"archs": archs, "encoders": encoders, "augment": o.augment, "split_file": str(src),
                          "speed": o.speed})
    records = run_cells(study, cells, extra=_cost(study, o.speed, o.speed_iters))
    df = grid_table(records, archs, encoders)
    from sonoseg.bench.benchmark import machine_info

    info = machine_info()
    threads_used = df["fps_threads"].dropna()
    cpu = f"{info.get('cpu', 'unknown CPU')}, {int(threads_used.iloc[0]) if len(threads_used) else '-'} thread(s)"
    files = write_outputs(root, "results", df, _markdown(df, study, records, cpu))
    fig = pareto_figure(df, root / "pareto.png")
    if fig:
        files["png"] = fig
    return StudyResult(root, records, df, files)
