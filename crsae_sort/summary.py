"""What a sort reports about itself: the typed summary written to ``summary.json``.

One shape for a single sort and for channel groups sorted apart (then ``groups`` counts the
units of each group and each unit records its ``group`` and its ``template`` index there).
``Summary.read(folder)`` is how the report and the batch table read a finished sort.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .io.checkpoints import checkpointed


@checkpointed
@dataclass
class GrownAtom:
    """An atom added by growth (:mod:`crsae_sort.grow`): from the residual ``y - H z``, or split off an atom
    that coded two units (:mod:`crsae_sort.split`); with the evidence for it."""
    round: int                 # growth round that added it (1, 2, ...)
    atom: int                  # its template index in the grown model
    n_spikes: int              # residual peaks in its cluster
    rate_hz: float             # those peaks per second of the searched slices
    peak_sigma: float          # largest |value| of the cluster's median snippet (noise standard deviations)
    amplitude: float           # norm of that snippet: the atom's reference amplitude
    isi_violations: float      # fraction of the cluster's inter-spike intervals under 1.5 ms
    max_similarity: float      # best-lag cosine similarity to the closest atom before it (split: sibling)
    similar_to: int            # that atom (split: the atom split)
    coincident: float          # largest fraction of its peaks on one existing atom's spikes (within 0.5 ms)
    coincident_with: int       # that atom (-1: none)
    peak_channel: int          # channel index of the snippet's largest |value|
    origin: str = "residual"   # "residual" or "split"


@dataclass
class TemplateReadOut:
    """What the read-out made of one template's codes: peaks kept, peaks thrown away, the unit kept or not."""
    template: int
    origin: str                # "init" (initial clustering), "residual" (growth) or "split"
    code_peaks: int            # local maxima of its code train (candidates)
    below_floor: int           # candidates under amplitude_fraction x its reference amplitude: discarded
    spikes: int                # candidates kept as spikes
    unit_kept: bool            # False: fewer than min_spikes spikes, the whole template dropped
    group: str | None = None   # channel group, when groups were sorted apart


@dataclass
class UnitSummary:
    unit_id: int
    num_spikes: int
    firing_rate_hz: float
    lambda_: float                     # the template's learned sparsity weight
    median_debiased_amplitude: float   # median code amplitude + lambda (whitened units)
    peak_uv: float                     # largest absolute value of the µV template
    peak_sample: int                   # template sample a spike time points at (recording rate)
    group: str | None = None           # channel group, when groups were sorted apart
    template: int | None = None        # the unit's template index within its group
    origin: str = "init"               # where its atom came from: "init", "residual" (growth) or "split"
    quality: str | None = None         # "good", "mua" or "noise" (crsae_sort.curate); None: not labelled
    quality_metrics: dict | None = None  # the SpikeInterface metrics the label was decided on (None: not computed)


@dataclass
class Summary:
    units: list[UnitSummary]
    num_spikes: int
    num_templates: int
    duration_s: float
    sampling_frequency_hz: float
    decimation: int
    num_channels: int
    device: str
    training_steps: int = 0
    lipschitz: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)   # per stage, and "total"
    cpus_busy: dict[str, float] = field(default_factory=dict)  # per stage: CPU seconds (with workers) / wall seconds
    times_real_time: float | None = None
    dead_channels_excluded: list[str] = field(default_factory=list)
    groups: dict[str, int] | None = None                      # units per channel group
    motion_correction: str | None = None                      # correct_motion preset applied, None when off
    max_displacement_um: float | None = None                  # largest drift it estimated
    read_out: list[TemplateReadOut] = field(default_factory=list)  # per template, what the read-out discarded
    grown: list[GrownAtom] = field(default_factory=list)      # atoms added from the residual, with evidence
    amplitude_unit: str = "uV"  # of templates and amplitudes: "uV", or "counts" (amplitude_unit=counts: file units)
    presence_ratio_bin_s: float | None = None                 # bin of the units' presence ratio (curate.py)
    removed_units: dict[str, str] = field(default_factory=dict)  # unit id -> label, removed by remove_labels

    @property
    def model_sampling_frequency_hz(self) -> float:
        return self.sampling_frequency_hz / self.decimation

    def finish(self, total_s: float) -> None:
        """Record the total wall time and the speed relative to real time."""
        self.seconds["total"] = total_s
        self.times_real_time = self.duration_s / total_s if total_s > 0 else None

    def to_dict(self) -> dict:
        """The JSON form; unit fields that do not apply (``group``, ``template``) are left out."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("units", "read_out", "grown")}
        out["units"] = [{k: v for k, v in dataclasses.asdict(u).items() if v is not None or k not in
                         ("group", "template")} for u in self.units]
        out["read_out"] = [{k: v for k, v in dataclasses.asdict(t).items() if v is not None or k != "group"}
                           for t in self.read_out]
        out["grown"] = [dataclasses.asdict(g) for g in self.grown]
        if self.groups is None:
            del out["groups"]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Summary":
        names = {f.name for f in dataclasses.fields(cls)}
        typed = dict(units=[UnitSummary(**u) for u in d.get("units", [])],
                     read_out=[TemplateReadOut(**t) for t in d.get("read_out", [])],
                     grown=[GrownAtom(**g) for g in d.get("grown", [])])
        return cls(**typed, **{k: v for k, v in d.items() if k in names and k not in typed})

    @classmethod
    def read(cls, folder: Path) -> "Summary":
        return cls.from_dict(json.loads((Path(folder) / "summary.json").read_text()))
