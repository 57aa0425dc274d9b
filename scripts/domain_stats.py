"""Fit the out-of-scope statistics of a model and write its sidecar ``<model>.domain.npz``.

Training-split images give the feature distribution (mean, top-k principal components, residual
variance); validation-split images set the flag threshold (a percentile of their scores). The test
split is never looked at (bench/domain.py measures flag rates and ROC AUC on it).

    python scripts/domain_stats.py ../shared/data/busi docs/default_model/training_split.csv   # shipped model
    python scripts/domain_stats.py ../shared/data/busi configs/busi_split.csv \
        --also ../shared/data/bus_uclm configs/bus_uclm_split.csv --model accurate       # a two-source tier
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sonoseg.data import discover_dataset, read_split_csv
from sonoseg.runtime.backends import load_torch_model
from sonoseg.models.shipped import resolve_model
from sonoseg.infer.domain import DomainStats, file_features, sidecar_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("split_file", type=Path)
    ap.add_argument("--also", nargs=2, action="append", default=[], metavar=("DATASET", "SPLIT_FILE"),
                    help="another source the model was trained on (repeat)")
    ap.add_argument("--model", default=None, help="checkpoint, or fast | accurate | v3 (default: fast)")
    ap.add_argument("--k", type=int, default=16, help="principal components kept")
    ap.add_argument("--percentile", type=float, default=97.5, help="validation percentile = flag threshold")
    a = ap.parse_args()
    model_path = resolve_model(a.model, "predict")
    model, cfg = load_torch_model(model_path)
    by: dict[str, list] = {"train": [], "val": []}
    for dataset, split_file in [(a.dataset, a.split_file)] + [(Path(d), Path(f)) for d, f in a.also]:
        split = read_split_csv(split_file)
        samples = discover_dataset(dataset)
        for s in by:
            by[s] += [x.image_path for x in samples if split.get(x.stem) == s]
    t0 = time.time()
    tr = file_features(model, cfg, by["train"])
    va = file_features(model, cfg, by["val"])
    stats = DomainStats.fit(tr, va, k=a.k, percentile=a.percentile,
                            info={"model": model_path.name,
                                  "dataset": ", ".join([a.dataset.name] + [Path(d).name for d, _ in a.also]),
                                  "split_file": ", ".join([a.split_file.name] + [Path(f).name for _, f in a.also]),
                                  "features": f"encoder deepest conv, global average ({tr.shape[1]} dims)"})
    out = stats.save(sidecar_path(model_path))
    print(f"train {len(tr)}, val {len(va)} images, {tr.shape[1]} features, k={stats.info['k']}: "
          f"threshold {stats.threshold:.3f}; {time.time() - t0:.0f} s -> {out} ({out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
