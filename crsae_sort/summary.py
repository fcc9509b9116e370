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
    times_real_time: float | None = None
    dead_channels_excluded: list[str] = field(default_factory=list)
    groups: dict[str, int] | None = None                      # units per channel group
    motion_correction: str | None = None                      # correct_motion preset applied, None when off
    max_displacement_um: float | None = None                  # largest drift it estimated

    @property
    def model_sampling_frequency_hz(self) -> float:
        return self.sampling_frequency_hz / self.decimation

    def finish(self, total_s: float) -> None:
        """Record the total wall time and the speed relative to real time."""
        self.seconds["total"] = total_s
        self.times_real_time = self.duration_s / total_s if total_s > 0 else None

    def to_dict(self) -> dict:
        """The JSON form; unit fields that do not apply (``group``, ``template``) are left out."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "units"}
        out["units"] = [{k: v for k, v in dataclasses.asdict(u).items() if v is not None or k not in
                         ("group", "template")} for u in self.units]
        if self.groups is None:
            del out["groups"]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Summary":
        names = {f.name for f in dataclasses.fields(cls)}
        units = [UnitSummary(**u) for u in d.get("units", [])]
        return cls(units=units, **{k: v for k, v in d.items() if k in names and k != "units"})

    @classmethod
    def read(cls, folder: Path) -> "Summary":
        return cls.from_dict(json.loads((Path(folder) / "summary.json").read_text()))
