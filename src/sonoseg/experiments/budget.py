"""How much one cell of a study may cost: epochs, model-grid size, and optionally minutes of training.

A study multiplies one training run by its number of cells, so the budget is what makes it fit the
machine at hand (a CPU session: few epochs at 128x128; a GPU: the recipe's own epochs at 256x256).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from sonoseg.errors import ConfigError

_KEYS = ("epochs", "size", "minutes")


@dataclass(frozen=True)
class Budget:
    """``None`` keeps the recipe's value; ``minutes`` caps each cell's training wall time."""

    epochs: Optional[int] = None
    size: Optional[tuple[int, int]] = None  # (height, width) of the model grid
    minutes: Optional[float] = None

    @classmethod
    def parse(cls, text: Optional[str]) -> "Budget":
        """``"epochs=5,size=128,minutes=10"`` (any subset; size ``H`` or ``HxW``)."""
        if not text or not text.strip():
            return cls()
        vals: dict = {}
        for part in text.split(","):
            if "=" not in part:
                raise ConfigError(f"--budget {text!r}: {part.strip()!r} is not key=value (keys: {', '.join(_KEYS)})")
            key, raw = (t.strip() for t in part.split("=", 1))
            try:
                if key == "epochs":
                    vals[key] = int(raw)
                elif key == "minutes":
                    vals[key] = float(raw)
                elif key == "size":
                    hw = [int(v) for v in raw.lower().split("x")]
                    vals[key] = (hw[0], hw[-1]) if len(hw) in (1, 2) else None
                    if vals[key] is None:
                        raise ValueError
                else:
                    raise ConfigError(f"--budget: unknown key {key!r} (keys: {', '.join(_KEYS)})")
            except ValueError:
                raise ConfigError(f"--budget: {key}={raw!r} is not a valid value") from None
        b = cls(**vals)
        if (b.epochs is not None and b.epochs < 1) or (b.minutes is not None and b.minutes <= 0) or (
                b.size is not None and min(b.size) < 16):
            raise ConfigError(f"--budget {text!r}: epochs >= 1, minutes > 0 and size >= 16 are required")
        return b

    def overrides(self) -> list[str]:
        """Config overrides that apply this budget."""
        o = []
        if self.epochs is not None:
            o.append(f"train.epochs={self.epochs}")
        if self.size is not None:
            o.append(f"preprocess.size=[{self.size[0]}, {self.size[1]}]")
        return o

    def as_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size) if self.size else None
        return d

    def describe(self) -> str:
        parts = [f"{self.epochs} epochs" if self.epochs else "recipe epochs",
                 f"{self.size[0]}x{self.size[1]}" if self.size else "recipe size"]
        if self.minutes:
            parts.append(f"<= {self.minutes:g} min training per cell")
        return ", ".join(parts)
