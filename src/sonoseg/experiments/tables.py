"""Study outputs: tables as CSV (every number) and Markdown (means with 95% CIs), figures as PNG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd


def metric_cols(record: dict, eval_name: str, prefix: str, metrics: Sequence[str] = ("dice",)) -> dict:
    """Flat ``<prefix>_<metric>``, ``_lo``, ``_hi`` columns of one evaluated set of a cell record."""
    ev = (record.get("metrics") or {}).get(eval_name) or {}
    out = {}
    for m in metrics:
        v = ev.get(m) or {}
        out[f"{prefix}_{m}"] = v.get("mean")
        out[f"{prefix}_{m}_lo"] = v.get("lo")
        out[f"{prefix}_{m}_hi"] = v.get("hi")
    return out


def fmt_ci(mean, lo=None, hi=None, digits: int = 3) -> str:
    """``0.812 [0.780, 0.840]``; '-' when missing."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    s = f"{mean:.{digits}f}"
    if lo is not None and hi is not None and not (math.isnan(lo) or math.isnan(hi)):
        s += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return s


def fmt_num(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Optional[Sequence[str]] = None) -> str:
    """A GitHub Markdown table; ``align`` per column 'l' or 'r' (default: first left, rest right)."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join(":--" if a == "l" else "--:" for a in align) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def failed_section(records: Sequence[dict]) -> str:
    """Markdown list of broken cells with their one-line reasons ('' when none)."""
    bad = [r for r in records if r.get("status") != "ok"]
    if not bad:
        return ""
    return "\n**Failed cells** (rerun the command to retry them):\n\n" + "".join(
        f"- `{r['id']}`: {r.get('reason') or 'unknown reason'}\n" for r in bad)


def write_outputs(root: Path, stem: str, df: pd.DataFrame, md: str) -> dict[str, Path]:
    """``<stem>.csv`` and ``<stem>.md`` in the study folder."""
    root.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = root / f"{stem}.csv", root / f"{stem}.md"
    df.to_csv(csv_path, index=False)
    md_path.write_text(md)
    return {"csv": csv_path, "md": md_path}


def new_figure(ncols: int = 1, width: float = 5.0, height: float = 3.6):
    """A matplotlib figure on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
