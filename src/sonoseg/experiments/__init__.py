"""Studies as functions (and as ``sonoseg experiment noise|size|grid``): many training runs of one
recipe, each a cell of a study folder, trained by :mod:`sonoseg.train` and scored by
:mod:`sonoseg.evaluate` exactly as ``sonoseg train`` / ``sonoseg evaluate`` would.

    from sonoseg.experiments import SizeOptions, size_study
    res = size_study("data/busi", "studies/size",
                     SizeOptions(split_file="configs/busi_split.csv", budget="epochs=10,size=128",
                                 sizes=[5, 25, 105], seeds=[0, 1]))
    res.table          # pandas DataFrame (also results.csv / results.md in the study folder)
    res.failed         # records of broken cells, each with its one-line reason

Each study takes ``(dataset, out, options)``: :mod:`sonoseg.experiments.options` holds the options,
their defaults and their checks. Rerunning a call resumes: finished cells are skipped, an
interrupted one continues from its last epoch.
"""

from sonoseg.experiments.budget import Budget
from sonoseg.experiments.grid import grid_study
from sonoseg.experiments.noise import add_noise, noise_study
from sonoseg.experiments.options import (ARCHS, DEFAULT_SEEDS, DEFAULT_SIZES, ENCODERS, GridOptions, Noise,
                                         NoiseOptions, SizeOptions, StudyOptions)
from sonoseg.experiments.size import size_study
from sonoseg.experiments.study import StudyResult

__all__ = ["ARCHS", "DEFAULT_SEEDS", "DEFAULT_SIZES", "ENCODERS", "Budget", "GridOptions", "Noise", "NoiseOptions",
           "SizeOptions", "StudyOptions", "StudyResult", "add_noise", "grid_study", "noise_study", "size_study"]
