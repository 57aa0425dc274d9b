"""What a study may be asked: one typed options object per study, defaults and checks in one place.

:class:`StudyOptions` holds what every study shares (recipe, per-cell budget, device and threads,
bootstrap, reports, progress callbacks); :class:`NoiseOptions`, :class:`SizeOptions` and
:class:`GridOptions` add each study's own axes. Studies take ``(dataset, out, options)``; the CLI
builds the options from its flags, a notebook builds them directly::

    size_study("data/busi", "studies/size", SizeOptions(sizes=[5, 25], seeds=[0], budget="epochs=10"))

Bad values raise a one-line :class:`~sonoseg.errors.ConfigError` when the options are made, before
any cell runs. Adding a study option: a field here (with its check), the CLI flag, the code using it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from sonoseg.errors import ConfigError
from sonoseg.experiments.budget import Budget

# noise study vocabulary
KINDS = ("gaussian", "speckle")
SETTINGS = ("baseline", "mixed", "noisy-val")
# size study defaults: seed 003's image counts, three seeds
DEFAULT_SIZES: tuple[float, ...] = (5, 10, 15, 20, 25, 45, 65, 85, 105)
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
# grid defaults: seed 004's architectures, one encoder per family
ARCHS: tuple[str, ...] = ("unet_smp", "unetplusplus", "manet", "linknet", "fpn", "pspnet", "pan", "deeplabv3",
                          "deeplabv3plus")
ENCODERS: tuple[str, ...] = ("resnet18", "efficientnet-b0", "mobilenet_v2")
AUGMENT = {"both": (False, True), "on": (True,), "off": (False,)}

CellCallback = Callable[[int, int, dict], None]


def _set(obj, name: str, value) -> None:
    object.__setattr__(obj, name, value)  # normalising a frozen dataclass in __post_init__


@dataclass(frozen=True)
class Noise:
    kind: str
    level: float

    @property
    def tag(self) -> str:
        return f"{self.kind}{self.level:g}"


def parse_noises(specs: Sequence[str]) -> list[Noise]:
    """``["gaussian=5,20", "speckle=10"]`` -> Noise list (levels > 0)."""
    out: list[Noise] = []
    for spec in specs:
        if "=" not in spec:
            raise ConfigError(f"--noise {spec!r}: expected KIND=LEVEL[,LEVEL...] with KIND one of {', '.join(KINDS)}")
        kind, levels = (t.strip().lower() for t in spec.split("=", 1))
        if kind not in KINDS:
            raise ConfigError(f"--noise {spec!r}: unknown noise {kind!r} (noises: {', '.join(KINDS)})")
        try:
            vals = [float(v) for v in levels.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--noise {spec!r}: levels must be numbers") from None
        if not vals or min(vals) <= 0:
            raise ConfigError(f"--noise {spec!r}: give at least one level > 0")
        out += [Noise(kind, v) for v in vals]
    return list(dict.fromkeys(out))


def check_sizes(sizes: Sequence[float]) -> None:
    """Sizes are all image counts (integers) or all fractions (<= 1) of the training split, all > 0."""
    sizes = list(sizes)
    if not sizes or min(sizes) <= 0:
        raise ConfigError("sizes must be > 0")
    if max(sizes) > 1 and any(float(s) != int(s) for s in sizes):
        raise ConfigError(f"sizes {sizes}: give image counts (integers) or fractions (all <= 1), not a mix")


@dataclass(frozen=True)
class StudyOptions:
    """What every study shares. ``budget``: a :class:`Budget` or its text (``"epochs=5,size=128"``);
    ``overrides``: config overrides for every cell (``train.lr=3e-4``); ``split_file``: train/val/test
    CSV (default: one made in the study folder); ``config``: the recipe YAML (default: the shipped
    model's); ``on_cell(k, n, record)`` is called after each cell."""

    split_file: Optional[Union[str, Path]] = None
    config: Optional[Union[str, Path]] = None
    overrides: Sequence[str] = ()
    budget: Union[Budget, str, None] = None
    threads: Optional[int] = None
    device: Optional[str] = None
    n_boot: int = 1000
    reports: bool = True  # evaluate's HTML report (with its gallery) for each cell's "test" set
    log: Callable[[str], None] = print
    show_progress: bool = False
    on_cell: Optional[CellCallback] = None

    def __post_init__(self) -> None:
        if not isinstance(self.budget, Budget):
            _set(self, "budget", Budget.parse(self.budget))
        if isinstance(self.overrides, str):
            raise ConfigError(f"overrides {self.overrides!r}: give a list of key=value strings")
        _set(self, "overrides", tuple(self.overrides))
        if self.threads is not None and int(self.threads) < 1:
            raise ConfigError(f"threads {self.threads}: give at least 1")
        if int(self.n_boot) < 1:
            raise ConfigError(f"n_boot {self.n_boot}: give at least 1 bootstrap resample")


@dataclass(frozen=True)
class NoiseOptions(StudyOptions):
    """``noises``: ``"KIND=LEVEL[,LEVEL...]"`` strings and/or :class:`Noise` (default: both kinds at
    2.5, 7.5 and 20% of the images' full scale); ``settings``: any of :data:`SETTINGS`; ``seed``
    seeds the noisy copies."""

    noises: Optional[Sequence[Union[str, Noise]]] = None
    settings: Sequence[str] = SETTINGS
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = [s for s in self.settings if s not in SETTINGS]
        if bad or not self.settings:
            raise ConfigError(f"unknown setting(s) {', '.join(bad) or '(none)'}; settings: {', '.join(SETTINGS)}")
        _set(self, "settings", tuple(self.settings))
        if self.noises:
            given = list(self.noises)
            _set(self, "noises", tuple([n for n in given if isinstance(n, Noise)]
                                       + parse_noises([n for n in given if isinstance(n, str)])))
        else:
            _set(self, "noises", None)


@dataclass(frozen=True)
class SizeOptions(StudyOptions):
    """``sizes``: image counts or, when all are <= 1, fractions of the training split; ``seeds``: per
    size (subset and training seed); ``log_x``: logarithmic size axis in the figure."""

    sizes: Sequence[float] = DEFAULT_SIZES
    seeds: Sequence[int] = DEFAULT_SEEDS
    log_x: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_sizes(self.sizes)
        if not self.seeds:
            raise ConfigError("give at least one seed")
        _set(self, "sizes", tuple(self.sizes))
        _set(self, "seeds", tuple(int(s) for s in self.seeds))


@dataclass(frozen=True)
class GridOptions(StudyOptions):
    """``archs`` x ``encoders``, each trained with and/or without seed 004's augmentation
    (``augment``: both | on | off); ``speed`` times each network's int8 path (``speed_iters`` runs)."""

    archs: Sequence[str] = ARCHS
    encoders: Sequence[str] = ENCODERS
    augment: str = "both"
    speed: bool = True
    speed_iters: int = 30

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.augment not in AUGMENT:
            raise ConfigError(f"--augment {self.augment!r}: use both, on or off")
        if not self.archs or not self.encoders:
            raise ConfigError("give at least one architecture and one encoder")
        _set(self, "archs", tuple(self.archs))
        _set(self, "encoders", tuple(self.encoders))
