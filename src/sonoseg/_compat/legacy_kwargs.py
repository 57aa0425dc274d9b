"""Old keyword spellings of entry points that now take one options object.

``evaluate_model``, ``export_model``, ``export_onnx`` and ``train`` took their settings as a dozen or
more loose keywords; they now take a typed options dataclass. The old keywords keep working for one
release (a DeprecationWarning names the new spelling), then go: notebooks and scripts get a release to
move, and the options class stays the one place that holds defaults and validation.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import fields, replace
from typing import Any, Optional, Sequence, TypeVar

T = TypeVar("T")


def options_with_legacy(cls: type[T], options: Any, legacy: dict, func: str, *, positional: Optional[str] = None,
                        ignored: Sequence[str] = (), none_is_default: bool = False, stacklevel: int = 3) -> T:
    """``options`` (a ``cls`` or None) with the deprecated keywords ``legacy`` applied on top.

    ``positional``: the field the old second positional argument filled, when it was a path
    (``export_model(ckpt, out_dir)``, ``evaluate_model(dataset, split_file)``); ``ignored``: old keywords
    that had no effect any more and are dropped; ``none_is_default``: an old keyword given as None keeps the
    field's default (predict's flags used None for "the model's own setting"). Any other unknown keyword is a
    TypeError, as the old signature raised. ``stacklevel``: where the warning points (the entry point's caller)."""
    if positional is not None and isinstance(options, (str, os.PathLike)):
        legacy = {positional: options, **legacy}
        options = None
    if options is not None and not isinstance(options, cls):
        raise TypeError(f"{func}(): options must be {cls.__name__}, not {type(options).__name__}")
    if not legacy:
        return options if options is not None else cls()
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(legacy) - names - set(ignored))
    if unknown:
        raise TypeError(f"{func}() got an unexpected keyword argument {unknown[0]!r}")
    warnings.warn(f"{func}({', '.join(f'{k}=' for k in legacy)}) is deprecated and will be removed in the next "
                  f"release; pass {cls.__name__}({', '.join(f'{k}=' for k in legacy if k in names)}...)",
                  DeprecationWarning, stacklevel=stacklevel)
    kept = {k: v for k, v in legacy.items() if k in names and not (none_is_default and v is None)}
    return replace(options, **kept) if options is not None else cls(**kept)
