"""The one way a parameter is declared, parsed and checked: a dataclass field carrying its help text,
unit and bounds; :func:`coerce` parses a value (``"30"``, ``"true"``) to its type and :func:`check`
holds it to its bounds or choices.

Used by :mod:`crsae_sort.params` and by each encoder's options (:mod:`crsae_sort.model.encoders.options`),
so the CLI, the SpikeInterface plugin and ``docs/parameters.md`` read every parameter the same way.
"""
from __future__ import annotations

from dataclasses import field
from typing import Any

from .errors import InputError


def param(default: Any, help: str, unit: str = "", low: float | None = None, high: float | None = None,
          choices: tuple | None = None, low_open: bool = False):
    """A dataclass field with ``default`` and metadata ``help``, ``unit``, bounds ``[low, high]`` or ``choices``."""
    meta = dict(help=help, unit=unit, low=low, high=high, choices=choices, low_open=low_open)
    return field(default=default, metadata=meta)


def bounds_text(f) -> str:
    m = f.metadata
    if m["choices"]:
        return " | ".join(m["choices"])
    if m["low"] is None and m["high"] is None:
        return ""
    left = "(" if m["low_open"] else "["
    return f"{left}{m['low']:g}, {m['high']:g}]"


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(name: str, value: Any, typ: type) -> Any:
    """``value`` as ``typ``; strings from the command line are parsed, lossy conversions refused."""
    text = value.strip().lower() if isinstance(value, str) else None
    if typ is bool:
        if isinstance(value, bool):
            return value
        if text in _TRUE | _FALSE:
            return text in _TRUE
    elif typ is int and not isinstance(value, bool):
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if text is not None and text.lstrip("+-").isdigit():
            return int(text)
    elif typ is float and not isinstance(value, bool):
        if isinstance(value, (int, float)):
            return float(value)
        if text is not None:
            try:
                return float(text)
            except ValueError:
                pass
    elif typ is str and isinstance(value, str):
        return value
    raise InputError(f"parameter {name}={value!r} must be of type {typ.__name__}")


def check(f, value) -> None:
    m = f.metadata
    if m["choices"] and value not in m["choices"]:
        raise InputError(f"parameter {f.name}={value!r} must be one of {', '.join(m['choices'])}")
    if isinstance(value, bool) or m["low"] is None:
        return
    if value != value:  # NaN
        raise InputError(f"parameter {f.name} is NaN; allowed range {bounds_text(f)}")
    too_low = value <= m["low"] if m["low_open"] else value < m["low"]
    if too_low or value > m["high"]:
        raise InputError(f"parameter {f.name}={value!r} is outside the allowed range {bounds_text(f)}")
