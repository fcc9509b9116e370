"""Each encoder's own typed options, without torch (``crsae-sort params`` and the plugin read them).

An encoder's options are a frozen dataclass whose fields are declared with
:func:`crsae_sort._fields.param`; field names start with the encoder's name (``sista_...``) so
every key of ``--set key=value`` stays unique. They appear in ``crsae-sort params``,
``docs/parameters.md`` and the plugin's defaults as the section ``encoder:<name>``. An encoder
with nothing to set beyond ``n_iterations`` and ``positive_codes`` has an empty dataclass.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FistaOptions:
    """FISTA (Beck & Teboulle 2009) unrolled for ``n_iterations`` steps: nothing else to set."""


@dataclass(frozen=True)
class IstaOptions:
    """ISTA (proximal gradient without momentum) unrolled for ``n_iterations`` steps: nothing else to set."""


ENCODER_OPTIONS: dict[str, type] = {
    "fista": FistaOptions,
    "ista": IstaOptions,
}
