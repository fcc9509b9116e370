"""The one way a parameter is declared: a dataclass field carrying its help text, unit and bounds.

Used by :mod:`crsae_sort.params` and by each encoder's options (:mod:`crsae_sort.model.encoders.options`),
so the CLI, the SpikeInterface plugin and ``docs/parameters.md`` read every parameter the same way.
"""
from __future__ import annotations

from dataclasses import field
from typing import Any


def param(default: Any, help: str, unit: str = "", low: float | None = None, high: float | None = None,
          choices: tuple | None = None, low_open: bool = False):
    """A dataclass field with ``default`` and metadata ``help``, ``unit``, bounds ``[low, high]`` or ``choices``."""
    meta = dict(help=help, unit=unit, low=low, high=high, choices=choices, low_open=low_open)
    return field(default=default, metadata=meta)
