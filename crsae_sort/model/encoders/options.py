"""Each encoder's own typed options, without torch (``crsae-sort params`` and the plugin read them).

An encoder's options are a frozen dataclass whose fields are declared with
:func:`crsae_sort._fields.param`; field names start with the encoder's name (``sista_...``) so
every key of ``--set key=value`` stays unique. They appear in ``crsae-sort params``,
``docs/parameters.md`` and the plugin's defaults as the section ``encoder:<name>``. An encoder
with nothing to set beyond ``n_iterations`` and ``positive_codes`` has an empty dataclass.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..._fields import param as _p


@dataclass(frozen=True)
class FistaOptions:
    """FISTA (Beck & Teboulle 2009) unrolled for ``n_iterations`` steps: nothing else to set."""


@dataclass(frozen=True)
class IstaOptions:
    """ISTA (proximal gradient without momentum) unrolled for ``n_iterations`` steps: nothing else to set."""


@dataclass(frozen=True)
class ReweightedOptions:
    """Unrolled reweighted l1 (Luong, Joukovsky & Deligiannis 2021): a learned threshold weight per layer and template."""
    reweighted_momentum: bool = _p(True, "encoder=reweighted: FISTA's momentum between layers (False: the paper's "
                                   "proximal-gradient layers, as ISTA).")


@dataclass(frozen=True)
class ReweightedCandesOptions:
    """Iteratively reweighted l1 (Candes, Wakin & Boyd 2008), one reweighting per layer: nothing learned."""
    reweighted_candes_epsilon: float = _p(1.0, "encoder=reweighted-candes: epsilon_c of the weights "
                                          "eps_c / (|z| + eps_c), as a multiple of lambda_c; smaller removes more "
                                          "of the lasso's amplitude bias on large codes.", "", 0.0, 1e3,
                                          low_open=True)


@dataclass(frozen=True)
class LearnedStepsOptions:
    """ALISTA-style layers (Liu et al. 2019): a learned step size and threshold scale per layer, H tied."""
    learned_steps_momentum: bool = _p(True, "encoder=learned-steps: FISTA's momentum between layers (False: "
                                      "ALISTA's plain proximal-gradient layers).")


@dataclass(frozen=True)
class SistaOptions:
    """SISTA (Wisdom et al. 2016): n_iterations steps per overlapping frame, warm-started by the previous frame."""
    sista_frame_templates: float = _p(8.0, "encoder=sista: frame length in code samples, as a multiple of the "
                                      "template length K.", "", 1.0, 1e4)
    sista_hop_fraction: float = _p(0.5, "encoder=sista: hop between frames as a fraction of the frame (1 - the "
                                   "overlap); every code sample gets n_iterations / sista_hop_fraction "
                                   "iterations in all.", "", 0.0, 1.0, low_open=True)
    sista_coupling: float = _p(0.0, "encoder=sista: lambda_2, the weight of the prior that a frame's "
                               "reconstruction equals the previous frame's on their overlap (0: warm start "
                               "only).", "", 0.0, 1e3)
    sista_momentum: bool = _p(True, "encoder=sista: FISTA's momentum within each frame, restarted per frame "
                              "(False: SISTA's plain ISTA steps).")


ENCODER_OPTIONS: dict[str, type] = {
    "fista": FistaOptions,
    "ista": IstaOptions,
    "reweighted": ReweightedOptions,
    "reweighted-candes": ReweightedCandesOptions,
    "learned-steps": LearnedStepsOptions,
    "sista": SistaOptions,
}
