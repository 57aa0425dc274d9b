"""Package a training run's best checkpoint as the shipped default model.

Usage: python scripts/ship_default_model.py runs/default/best.pt [metrics.json] [version] [--keep-float PREFIX ...]
       [--recipe configs/RECIPE.yaml]
Writes src/sonoseg/assets/models/busi_default.pt by ``sonoseg.models.packaging``: conv/linear weights stored as int8 with one scale per
output channel, the rest fp16 (a quarter of fp32, under the repository's 5 MiB line; decoded to fp32 on
load: evaluate the shipped file, its numbers are the shipped numbers; ``--fp16`` stores all in fp16 instead),
no optimiser/RNG state, and a config stripped of machine-local paths. The test
metrics from `sonoseg evaluate` (if given; plus class_metrics.json next to it for a class head) travel
inside the checkpoint for `sonoseg` to show; ``version`` (e.g. "busi_default v3") becomes model.version,
which predict writes into every result. ``--keep-float`` prefixes become model.int8_keep_float (ONNX
nodes kept in fp32 by every int8 build: choose them on validation images, see MODEL_CARD.md).
``--recipe`` stores the from-scratch training recipe (validated; ``--recipe-set KEY=VALUE`` overrides)
that `sonoseg train` without ``--config`` uses; needed when the checkpoint's own config is a warm-restart
continuation or a fine-tune.
"""

from __future__ import annotations

from pathlib import Path

from sonoseg.evaluate.aggregate import read_checkpoint_metrics
from sonoseg.models.packaging import ShipOptions, ship_checkpoint

DST = Path("src/sonoseg/assets/models/busi_default.pt")


def main(src: str, metrics_json: str | None = None, version: str | None = None,
         keep_float: list[str] | None = None, recipe: str | None = None, recipe_set: list[str] | None = None,
         fp16: bool = False,
         dst: Path = DST) -> None:
    metrics = read_checkpoint_metrics(metrics_json) if metrics_json else {}
    stored_recipe = None
    if recipe:
        from sonoseg.config import load_config

        stored_recipe = load_config(recipe, list(recipe_set or [])).model_dump(mode="json")
    opts = ShipOptions(version=version, storage="fp16" if fp16 else "int8", split_file="configs/busi_split.csv",
                       keep_float=list(keep_float or []), recipe=stored_recipe)
    dst = ship_checkpoint(src, dst, opts, metrics=metrics)
    print(f"{dst}: {dst.stat().st_size / 2**20:.2f} MiB, {opts.storage} storage")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("metrics_json", nargs="?")
    ap.add_argument("version", nargs="?")
    ap.add_argument("--keep-float", action="append", default=[], help="ONNX node-name prefix kept in fp32 (repeat)")
    ap.add_argument("--recipe", help="from-scratch training recipe (YAML) stored for `sonoseg train` without --config")
    ap.add_argument("--recipe-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override in the stored recipe (repeat), e.g. model.params.decoder_pyramid_channels=16")
    ap.add_argument("--fp16", action="store_true", help="store every weight as fp16 (twice the int8 file)")
    ap.add_argument("--out", type=Path, default=DST, help=f"where to write (default {DST})")
    a = ap.parse_args()
    main(a.src, a.metrics_json, a.version, keep_float=a.keep_float, recipe=a.recipe, recipe_set=a.recipe_set, fp16=a.fp16, dst=a.out)
