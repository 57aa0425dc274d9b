"""Which int8 scheme is exact on a CPU: one answer for the exporter (sonoseg.runtime.quantize) and the
trainer's quantisation-aware fine-tuning (sonoseg.runtime.qat), which must simulate what will be built.

See sonoseg.runtime.quantize for why the scheme depends on VNNI."""

from __future__ import annotations

import os

from sonoseg.errors import ConfigError

# scheme -> quantize_static arguments. "u8s8" needs VNNI to be exact (see sonoseg.runtime.quantize).
SCHEMES = {
    "u8s8": {"activation_type": "quint8", "weight_type": "qint8", "reduce_range": False},
    "u8s8-reduced": {"activation_type": "quint8", "weight_type": "qint8", "reduce_range": True},
    "u8u8": {"activation_type": "quint8", "weight_type": "quint8", "reduce_range": False},
}
SCHEME_ENV = "SONOSEG_INT8_SCHEME"


def default_scheme(cpu=None) -> str:
    """The int8 scheme that is exact and fast on ``cpu`` (default: this machine); ``$SONOSEG_INT8_SCHEME``
    forces one."""
    forced = os.environ.get(SCHEME_ENV, "").strip()
    if forced:
        if forced not in SCHEMES:
            raise ConfigError(f"${SCHEME_ENV}={forced!r} is not one of {', '.join(SCHEMES)}")
        return forced
    from sonoseg.system.cpu import has_vnni

    return "u8s8" if has_vnni(cpu) else "u8s8-reduced"
