"""The machinery every study shares: a study folder, one run folder per cell, a cell record written
atomically when the cell finishes, resumption, and broken cells that do not stop the rest.

Layout of a study folder::

    <study>/study.json            what was asked (kind, dataset, budget, recipe, overrides)
    <study>/splits/               split CSVs derived for the cells (sonoseg's split format)
    <study>/cells/<cell>/train/   the trainer's run folder (best.pt, last.pt, metrics.csv, ...)
    <study>/cells/<cell>/eval-<set>/  ``evaluate_model`` output per evaluated set
    <study>/cells/<cell>/cell.json    the record: status ok|failed, reason, metrics with CIs
    <study>/results.csv, results.md, *.png

A cell is trained by :func:`sonoseg.train.trainer.train` and scored by
:func:`sonoseg.evaluate.run.evaluate_model` -- the same code as ``sonoseg train`` / ``sonoseg evaluate``.
Rerunning a study skips cells whose record says ``ok``, continues a cell that was interrupted
mid-training from its ``last.pt`` (exact resume), and retries failed cells.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from sonoseg.errors import ConfigError, SonosegError
from sonoseg.evaluate.aggregate import jsonable
from sonoseg.experiments.options import StudyOptions

RECORD = "cell.json"
# metrics kept in cell records and tables (means with bootstrap CIs from evaluate_model)
METRICS = ("dice", "iou", "recall", "precision", "accuracy", "specificity", "hd95")


@dataclass
class Cell:
    """One training run of a study and the sets it is scored on."""

    id: str  # folder name under cells/
    info: dict  # the cell's coordinates in the study (shown in tables)
    split_file: Path  # train/val (and evaluation) assignment of this cell
    evals: dict[str, tuple[str, Path]]  # set name -> (split name, split file) to score best.pt on
    overrides: list[str] = field(default_factory=list)  # config overrides of this cell (win over --set)
    dataset: Optional[Path] = None  # default: the study's dataset


@dataclass
class Study:
    """A study folder plus the recipe every cell trains with."""

    kind: str
    root: Path
    dataset: Path
    base: dict  # recipe (config as a dict) before any override
    defaults: list[str] = field(default_factory=list)  # the study kind's changes to the recipe
    opts: StudyOptions = field(default_factory=StudyOptions)  # the user's budget, --set, threads, ...
    params: dict = field(default_factory=dict)  # kind-specific arguments, stored in study.json

    # the user's options, read through the study by the cell runner
    budget = property(lambda self: self.opts.budget)
    threads = property(lambda self: self.opts.threads)
    n_boot = property(lambda self: self.opts.n_boot)
    reports = property(lambda self: self.opts.reports)
    show_progress = property(lambda self: self.opts.show_progress)

    def log(self, msg: str) -> None:
        self.opts.log(msg)

    def config_for(self, cell: Cell):
        """The cell's SonosegConfig: recipe <- kind defaults <- --set <- cell <- budget, then data paths."""
        from sonoseg.config import load_config

        o = self.opts
        over = [*self.defaults, *o.overrides, *cell.overrides, *o.budget.overrides()]
        if o.threads is not None:
            over.append(f"train.threads={o.threads}")
        if o.device:
            over.append(f"train.device={o.device}")
        cfg = load_config(None, over, base=copy.deepcopy(self.base))
        cfg.data.root = str(cell.dataset or self.dataset)
        cfg.data.split_file = str(cell.split_file)
        cfg.data.cache_dir = str(self.root / ".cache")
        cfg.data.train_split, cfg.data.val_split = "train", "val"
        return cfg

    # what every cell's result depends on: a rerun with other values would mix incomparable cells
    IDENTITY = ("kind", "dataset", "budget", "recipe", "kind_defaults", "overrides", "n_boot")

    def write_manifest(self) -> None:
        """study.json: enough to see (and rerun) what the study is. Refuses a folder that holds a study
        made with another recipe, budget or overrides (finished cells would be skipped and mixed in)."""
        o = self.opts
        data = jsonable({
            "kind": self.kind, "dataset": str(Path(self.dataset).resolve()), "budget": o.budget.as_dict(),
            "recipe": self.base, "kind_defaults": self.defaults, "overrides": list(o.overrides),
            "threads": o.threads, "device": o.device, "n_boot": o.n_boot, "reports": o.reports,
            "params": self.params})
        path = self.root / "study.json"
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError):
                old = None
            if isinstance(old, dict):
                differ = [k for k in self.IDENTITY if json.dumps(old.get(k), sort_keys=True, default=str)
                          != json.dumps(data.get(k), sort_keys=True, default=str)]
                if differ:
                    raise ConfigError(f"{path}: this folder holds a {old.get('kind')} study with another "
                                      f"{', '.join(differ)}; rerun with the same settings to resume, or use another --out")
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, data)


@dataclass
class StudyResult:
    """What a study call returns: its folder, the cell records, the results table and the files written."""

    root: Path
    records: list[dict]
    table: "object"  # pandas DataFrame
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r.get("status") != "ok"]

    @property
    def skipped(self) -> list[str]:
        return [r["id"] for r in self.records if r.get("skipped")]


def atomic_write_json(path: Path, data: dict) -> None:
    """Write to a temporary file in the same folder, then rename: a record is whole or absent.
    NaN/inf become null (strict JSON), as in evaluate's metrics.json."""
    data = jsonable(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, allow_nan=False, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(cell_dir: Path) -> Optional[dict]:
    p = cell_dir / RECORD
    try:
        return json.loads(p.read_text()) if p.is_file() else None
    except (OSError, ValueError):
        return None  # unreadable record: the cell runs again


def one_line(exc: BaseException) -> str:
    """A broken cell's reason: sonoseg's own one-line messages, else the exception type and first line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, SonosegError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def _finite(x) -> Optional[float]:
    import math

    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def summarise_eval(result) -> dict:
    """{metric: {mean, lo, hi, n}} from an EvalResult's bootstrap aggregate."""
    out = {}
    for m in METRICS:
        a = result.aggregate.get(m) or {}
        ci = a.get("ci95") or [None, None]
        out[m] = {"mean": _finite(a.get("mean")), "lo": _finite(ci[0]), "hi": _finite(ci[1]), "n": int(a.get("n") or 0)}
    out["n_images"] = int(len(result.per_image))
    return out


def _train_cell(study: Study, cell: Cell, cell_dir: Path, cfg):
    from sonoseg.train.options import RunOptions
    from sonoseg.train.trainer import train

    limit = study.budget.minutes * 60.0 if study.budget.minutes else None
    run = cell_dir / "train"
    kw = dict(show_progress=study.show_progress, time_limit_s=limit)
    log = lambda m: study.log(f"  {m}")  # noqa: E731
    if (run / "last.pt").is_file():  # interrupted earlier: continue exactly where it stopped
        study.log(f"  resuming the interrupted training in {run}")
        return train(cfg, RunOptions(resume=run, epochs=cfg.train.epochs, **kw), log=log)
    if run.exists():
        shutil.rmtree(run)  # started but no epoch finished: nothing to keep
    return train(cfg, RunOptions(out=cell_dir, name="train", **kw), log=log)


def run_cell(study: Study, cell: Cell, extra: Optional[Callable] = None, before: Optional[Callable] = None) -> dict:
    """Train and evaluate one cell; returns its record (also written to cell.json). Never raises for
    a broken cell: the reason goes into the record (KeyboardInterrupt still stops the study).
    ``before(cell)`` may raise to refuse the cell; ``extra(cell, cell_dir, train_result, cfg)`` adds
    kind-specific measurements (a dict) to the record."""
    cell_dir = study.root / "cells" / cell.id
    record = {"id": cell.id, "info": cell.info, "status": "failed", "reason": None, "metrics": {}, "train": {},
              "extra": {}, "budget": study.budget.as_dict()}
    t0 = time.time()
    try:
        if before is not None:
            before(cell)
        cfg = study.config_for(cell)
        cell_dir.mkdir(parents=True, exist_ok=True)
        res = _train_cell(study, cell, cell_dir, cfg)
        record["train"] = {"seconds": round(res.seconds, 2), "epochs_run": res.epochs_run, "best_epoch": res.best_epoch,
                           "best_val_score": _finite(res.best_dice), "stopped_early": res.stopped_early,
                           "device": _device_name(cfg)}
        for name in cell.evals:
            record["metrics"][name] = _evaluate_cell(study, cell, cell_dir, name, res.best_checkpoint)
        if extra is not None:
            record["extra"] = extra(cell, cell_dir, res, cfg) or {}
        record["status"] = "ok"
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - a broken cell is recorded and the study goes on
        record["reason"] = one_line(exc)
    record["seconds"] = round(time.time() - t0, 2)
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    atomic_write_json(cell_dir / RECORD, record)
    return record


def _evaluate_cell(study: Study, cell: Cell, cell_dir: Path, name: str, checkpoint) -> dict:
    """Score one of the cell's evaluation sets with `sonoseg evaluate`'s code; the summary for the record."""
    from sonoseg.evaluate.options import EvaluateOptions
    from sonoseg.evaluate.run import evaluate_model

    split, split_file = cell.evals[name]
    study.log(f"  evaluating on {name} (split {split!r})")
    opts = EvaluateOptions(model=checkpoint, split_file=split_file, split=split, out_dir=cell_dir / f"eval-{name}",
                           backend="torch", threads=study.threads, n_boot=study.n_boot, distance_units="px",
                           report=study.reports and name == "test")
    ev = evaluate_model(cell.dataset or study.dataset, opts, log=lambda m: None)
    return summarise_eval(ev)


def _complete_evals(study: Study, cell: Cell, record: dict) -> dict:
    """A finished cell that lacks evaluation sets added since (e.g. a new noise level: the baseline is
    scored on every noisy test set) is scored on them with its best checkpoint; training is not redone."""
    missing = [n for n in cell.evals if n not in (record.get("metrics") or {})]
    cell_dir = study.root / "cells" / cell.id
    best = cell_dir / "train" / "best.pt"
    if not missing or not best.is_file():
        return record
    try:
        for name in missing:
            record.setdefault("metrics", {})[name] = _evaluate_cell(study, cell, cell_dir, name, best)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - recorded like any broken cell
        record.update(status="failed", reason=one_line(exc))
    atomic_write_json(cell_dir / RECORD, record)
    return record


def _device_name(cfg) -> str:
    from sonoseg.train.device import select_device

    try:
        return str(select_device(cfg.train.device))
    except ConfigError:
        return cfg.train.device


def run_cells(study: Study, cells: list[Cell], extra: Optional[Callable] = None,
              before: Optional[Callable] = None) -> list[dict]:
    """Run every cell not yet finished (record status ok), in order; returns all records."""
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        raise ConfigError("two cells of the study would share a folder: " + ", ".join(sorted({i for i in ids if ids.count(i) > 1})))
    study.write_manifest()
    records = []
    for k, cell in enumerate(cells, start=1):
        old = read_record(study.root / "cells" / cell.id)
        if old is not None and old.get("status") == "ok":
            old = _complete_evals(study, cell, old)
            old["skipped"] = True
            study.log(f"cell {k}/{len(cells)} {cell.id}: finished earlier, skipped")
            records.append(old)
        else:
            study.log(f"cell {k}/{len(cells)} {cell.id}: training ({study.budget.describe()})")
            rec = run_cell(study, cell, extra, before)
            rec["skipped"] = False
            msg = ("ok" if rec["status"] == "ok" else f"FAILED: {rec['reason']}") + f" ({rec['seconds']:.0f} s)"
            study.log(f"cell {k}/{len(cells)} {cell.id}: {msg}")
            records.append(rec)
        if study.opts.on_cell is not None:
            study.opts.on_cell(k, len(cells), records[-1])
    return records


def safe_id(*parts) -> str:
    """A folder name from the cell's coordinates (letters, digits, '.', '_', '-')."""
    import re

    text = "_".join(str(p) for p in parts if p is not None and str(p) != "")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "cell"


def recipe(config: Optional[str | Path], log: Callable[[str], None]) -> dict:
    """The recipe every cell starts from: the YAML at ``config``, else the shipped default model's
    (as ``sonoseg train`` without --config)."""
    import yaml

    if config is not None:
        p = Path(config)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            return yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: invalid YAML ({str(exc).splitlines()[0]})") from exc
    from sonoseg.models import default_recipe

    base = default_recipe()
    log(f"no --config: every cell trains the shipped default model's recipe "
        f"({base['model']['name']} + {base['model'].get('encoder')})")
    return base


def source_split(dataset: Path, split_file: Optional[str | Path], root: Path, seed: int = 42) -> Path:
    """The study's train/val/test assignment: the given split CSV, else a new grouped, duplicate-aware
    split written once to ``<study>/splits/source.csv`` (kept on reruns, so cells stay comparable)."""
    from sonoseg.data import discover_dataset, make_split, write_split_csv

    if split_file is not None:
        p = Path(split_file)
        if not p.is_file():
            raise ConfigError(f"{p}: split file not found")
        return p
    out = root / "splits" / "source.csv"
    if not out.is_file():
        samples = [s for s in discover_dataset(dataset) if s.mask_path is not None]
        if not samples:
            raise ConfigError(f"{dataset}: no image/mask pairs found")
        write_split_csv(make_split(samples, seed=seed), out)
    return out


def labelled_assignment(dataset: Path, split_file: Path) -> dict[str, str]:
    """stem -> split for the labelled images of ``dataset`` listed in ``split_file``."""
    from sonoseg.data import discover_dataset, read_split_csv

    assignment = read_split_csv(split_file)
    stems = [s.stem for s in discover_dataset(dataset) if s.mask_path is not None]
    out = {s: assignment[s] for s in stems if s in assignment}
    if not out:
        raise ConfigError(f"{split_file}: no labelled image of {dataset} is listed")
    return out


def write_split(rows: list[tuple[str, str]], path: Path) -> Path:
    """A split CSV (``image,split``; read by :func:`sonoseg.data.read_split_csv`), written atomically."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", "split"])
    w.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, path)
    return path
