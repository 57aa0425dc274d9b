"""The comparison behind test_qat's QAT-vs-plain test, run as a child process: a phantom model trained in fp32 is
(a) exported int8 as it is, and (b) fine-tuned for the same epochs with QAT and, as the control, in plain fp32;
each exported int8 the same way. Prints, as JSON, the export gate's (mean, worst, int8 Dice) per model and the
QAT model's agreement with its own int8 simulation.

Why a child process: training floats depend on the CPU's kernels (AVX-512 and AVX2 round differently), and on
this tiny phantom that is enough to change which fine-tune int8 happens to agree with best. The test therefore
pins the kernels to AVX2 (present on every machine this project runs on) before torch starts, which only works
in a fresh process; see PINNED_ENV.

    python tests/_qat_compare.py WORK_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

# Same kernels on every x86-64 CPU with AVX2: ATen's vector code, oneDNN's convolutions, MKL's reproducible branch.
PINNED_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2", "OMP_NUM_THREADS": "1",
              "SONOSEG_INT8_SCHEME": "u8s8-reduced"}


def compare(tmp: Path) -> dict:
    import torch

    from sonoseg.config import load_config
    from sonoseg.data import discover_dataset
    from sonoseg.data.phantom import write_phantom_dataset
    from sonoseg.data.split import make_split, write_split_csv
    from sonoseg.export import export_model, split_grids
    from sonoseg.train.trainer import train

    assert torch.backends.cpu.get_cpu_capability() == "AVX2", "run with PINNED_ENV"  # not silently unpinned
    ds = write_phantom_dataset(tmp / "ds", n=40, size=(64, 64), seed=5)
    split = write_split_csv(make_split(discover_dataset(ds), ratios=(0.6, 0.4), seed=0, dup_threshold=-1),
                            tmp / "split.csv")

    def cfg(epochs: int, lr: float, *extra: str):
        return load_config(None, [
            f"data.root={ds}", f"data.split_file={split}", f"data.cache_dir={tmp / 'cache'}", "data.batch_size=4",
            "model.name=unet", "model.params={base_channels: 4, depth: 2, bilinear: true}", "preprocess.size=[64, 64]",
            f"train.epochs={epochs}", "train.threads=1", f"train.lr={lr}", "train.scheduler=none",
            "augment.enabled=false", "train.early_stopping_patience=null", *extra])

    quiet = dict(log=lambda m: None, show_progress=False, out=tmp / "runs")
    base = train(cfg(15, 0.01), name="fp32", **quiet)
    control = train(cfg(6, 0.001), name="control", init=base.last_checkpoint, **quiet)
    qat = train(cfg(6, 0.001, "train.qat.enabled=true"), name="qat", init=base.last_checkpoint, **quiet)

    c = cfg(1, 0.01)
    calib = [g for g, _ in split_grids(ds, split, "train", c, cache_dir=tmp / "cache")]
    val = split_grids(ds, split, "val", c, cache_dir=tmp / "cache")
    gate, sim = {}, None
    for name, run in (("ptq", base), ("control", control), ("qat", qat)):
        rep = export_model(run.last_checkpoint, tmp / name, formats=("onnx-int8",), calib_images=calib,
                           val_pairs=val, tolerance=1.0, min_agreement=0.0, min_worst_agreement=0.0, threads=1)
        fp32 = rep.details["onnx-int8"].get("agreement_with_fp32")  # a QAT model's gate checks the simulation
        le = rep.details["onnx-int8"]["agreement_lesion_frames"]  # the measure: frames with a lesion
        assert le["n"] == sum(1 for _, g in val if np.any(g)) and le["worst"] >= rep.agreement_worst["onnx-int8"]
        gate[name] = ((fp32["mean"], fp32["worst"]) if fp32 else (rep.agreement_mean["onnx-int8"],
                                                                  rep.agreement_worst["onnx-int8"])) \
            + (rep.dice["onnx-int8"],)
        if name == "qat":
            # the gate's reference for a QAT model is the int8 simulation it was validated as, and int8
            # agrees with that closer than with the plain fp32 forward
            assert rep.details["onnx-int8"]["reference"].startswith("pytorch with the int8 simulation")
            assert rep.agreement_mean["onnx-int8"] >= fp32["mean"] and rep.agreement_worst["onnx-int8"] >= fp32["worst"]
            sim = (rep.agreement_mean["onnx-int8"], rep.agreement_worst["onnx-int8"])
            text = "\n".join(rep.lines())
            assert "agree with the int8 simulation's" in text and "(with fp32's: mean" in text
        else:
            assert "reference" not in rep.details["onnx-int8"]
    return {"gate": gate, "simulation": sim}


if __name__ == "__main__":
    print(json.dumps(compare(Path(sys.argv[1]))))
