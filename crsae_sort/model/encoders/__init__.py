"""The registry of unrolled encoders: a name (``--set encoder=NAME``) -> one module, one class.

To add an encoder: write ``<name>.py`` with a subclass of :class:`~.base.Encoder` (its equations
in the docstring), add its options dataclass to :data:`.options.ENCODER_OPTIONS` and a line to
:data:`ENCODERS`. The tests parametrise over :func:`encoder_names`, so it is tested at once.
"""
from __future__ import annotations

from importlib import import_module

from .options import ENCODER_OPTIONS

#: name -> (module in this package, class name)
ENCODERS: dict[str, tuple[str, str]] = {
    "fista": ("fista", "Fista"),
    "ista": ("ista", "Ista"),
    "reweighted": ("reweighted", "Reweighted"),
    "reweighted-candes": ("reweighted_candes", "ReweightedCandes"),
    "learned-steps": ("learned_steps", "LearnedSteps"),
    "sista": ("sista", "Sista"),
}


def encoder_names() -> list[str]:
    """Registered encoder names, the default (``fista``) first."""
    return list(ENCODERS)


def get_encoder_class(name: str):
    """The :class:`~.base.Encoder` subclass registered as ``name``."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    module, cls = ENCODERS[name]
    return getattr(import_module(f"{__name__}.{module}"), cls)


def make_encoder(name: str, n_iter: int, positive: bool = True, options=None, n_atoms: int | None = None):
    """An encoder instance: ``name`` with ``n_iter`` unrolled steps and its options (defaults if None).

    ``n_atoms``: the number of templates, for encoders with per-template weights (``reweighted``).
    """
    return get_encoder_class(name)(n_iter, positive, options, n_atoms)


__all__ = ["ENCODERS", "ENCODER_OPTIONS", "encoder_names", "get_encoder_class", "make_encoder"]
