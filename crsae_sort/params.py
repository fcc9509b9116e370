"""Every sorting parameter, once: default, type, unit, bounds and help text.

The CLI (``crsae-sort params``, ``--set key=value``), the SpikeInterface plugin
(``_default_params`` / ``_params_description``) and ``docs/parameters.md`` are generated from
these dataclasses. Keys are flat and unique across sections, so ``--set n_iterations=30``
needs no section name. Unknown keys and out-of-range values raise ``InputError`` (a
``ValueError``) naming the field, the value and the allowed range.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from ._fields import bounds_text, check, coerce
from ._fields import param as _p
from .errors import InputError
from .model.encoders.options import ENCODER_OPTIONS
from .model.gradients import DICTIONARY_GRADIENTS


#: SpikeInterface's correct_motion presets offered (``medicine`` needs a package we do not install)
MOTION_PRESETS = ("dredge_fast", "dredge", "rigid_fast", "nonrigid_accurate", "nonrigid_fast_and_accurate",
                  "kilosort_like")


@dataclass(frozen=True)
class PreprocessParams:
    """Scaling to µV, band-pass, common reference, whitening and decimation (all SpikeInterface, applied lazily)."""
    amplitude_unit: str = _p("uV", "Units of the samples the sort works in: 'uV' scales them by the recording's gain "
                             "to µV (integer data needs one: --gain-to-uv); 'counts' sorts the samples as the file "
                             "stores them, any gain ignored (command line: --counts), for integer data of unknown "
                             "gain. The spikes are the same with any gain; only the units of templates and "
                             "amplitudes change, and summary.json records amplitude_unit=counts.",
                             choices=("uV", "counts"))
    freq_min_hz: float = _p(300.0, "High-pass corner of the band-pass filter (SpikeInterface refuses corners below "
                            "100 Hz in chunked filtering: spikes need none).", "Hz", 100.0, 10000.0)
    freq_max_hz: float = _p(6000.0, "Low-pass corner; lowered to 0.45 x the sampling rate when above it.",
                            "Hz", 10.0, 50000.0)
    common_reference: str = _p("auto", "Common reference: 'median', 'none', or 'auto' (median when the "
                               "recording has 8 channels or more; tetrodes share spikes on all channels).",
                               choices=("auto", "median", "none"))
    whiten: bool = _p(True, "Whiten channels with SpikeInterface's whitening (noise becomes white, unit variance).")
    whitening_radius_um: float = _p(100.0, "Whitening is local: each channel is whitened with the channels within "
                                    "this distance (SpikeInterface's mode='local'), so a dense probe's far-apart "
                                    "channels are not mixed; 0, or a probe whose channels all lie within it "
                                    "(tetrodes), whitens all channels together (mode='global').", "um", 0.0, 10000.0)
    motion_correction: str = _p("auto", "Drift correction with SpikeInterface's correct_motion before whitening: "
                                "a preset name, 'off', or 'auto' (dredge_fast on long single-shank probes: more "
                                "than 32 channels, at most 60 um wide and at least 400 um deep, as spykingcircus2 "
                                "decides; off for tetrodes and short probes).",
                                choices=("auto", "off") + MOTION_PRESETS)
    decimate: bool = _p(True, "Run the model at a lower rate: the largest integer factor that keeps the low-pass "
                        "corner below 0.4 x the model rate (30 kHz -> 15 kHz at 6 kHz); spike times are "
                        "reported in the recording's own samples.")
    cache_mb: float = _p(2048.0, "Hold the preprocessed (model-rate, float32) recording in memory when it takes at "
                         "most this much, so that the initial clustering, training and inference read it once "
                         "instead of filtering it again each; longer recordings go to the disk cache "
                         "(cache_on_disk). 0 never holds it in memory.", "MB", 0.0, 1e6)
    cache_on_disk: bool = _p(True, "When the preprocessed recording is larger than cache_mb, compute it once into a "
                             "temporary binary file (float16 at the model rate: 2 bytes per sample and channel, "
                             "e.g. 41 GB for an hour of 384 channels at 15 kHz, and as much again for a while with "
                             "motion correction) that the later stages read, deleted when the sort ends; false "
                             "reads it lazily instead (no disk, but every read filters, corrects motion and whitens "
                             "again: 1.5-2x slower or more on the benchmark's dense probes).")
    cache_dir: str = _p("", "Folder for the disk cache (a fast local disk, a cluster's scratch); empty: inside the "
                        "output folder, or the system's temporary folder when sorting without one.")


@dataclass(frozen=True)
class InitParams:
    """Dictionary initialisation: peak detection, snippets, clustering."""
    detect_threshold: float = _p(5.0, "Peak detection threshold in noise standard deviations (MAD).", "sigma", 2.0, 50.0)
    init_duration_s: float = _p(60.0, "Seconds of recording (random chunks) used for detection and clustering.",
                                "s", 1.0, 3600.0)
    n_templates: int = _p(0, "Number of templates; 0 chooses it automatically by clustering.", "", 0, 512)
    max_templates: int = _p(24, "Upper bound on the automatic number of templates per clustering neighbourhood: "
                            "the whole probe for init_method=global, each spatial bin for local (so the total "
                            "grows with the probe).", "", 1, 512)
    template_ms_before: float = _p(1.0, "Template length before its peak (covers the positive pre-phase that many "
                                   "biophysical waveforms have up to 1 ms before the trough).", "ms", 0.05, 10.0)
    template_ms_after: float = _p(1.4, "Template length after its peak.", "ms", 0.1, 20.0)
    merge_similarity: float = _p(0.9, "Clusters are merged when their templates' best-lag cosine similarity "
                                 "exceeds this and their amplitudes are within merge_amplitude_ratio.", "", 0.5, 1.0)
    merge_amplitude_ratio: float = _p(1.3, "Largest amplitude ratio of two clusters that may be merged.",
                                      "", 1.0, 100.0)
    min_cluster_fraction: float = _p(0.01, "Smallest cluster kept, as a fraction of detected peaks (of the bin's "
                                     "peaks for init_method=local); never below 10 peaks (20 per bin for local).", "", 0.0, 0.5)
    init_method: str = _p("auto", "Initial clustering: 'global' clusters all-channel snippets at once; 'local' "
                          "clusters each spatial bin's peaks on the bin's channel neighbourhood and merges the "
                          "same unit seen from neighbouring bins (cost linear in channels, for dense probes); "
                          "'auto' is global when one neighbourhood holds every channel (tetrodes, small probes) "
                          "or n_templates is fixed, else local.", choices=("auto", "global", "local"))
    neighbourhood_radius_um: float = _p(60.0, "init_method=local: a bin's peaks are cut and clustered on the "
                                        "channels within this distance of the bin's channels; templates are merged "
                                        "only when their peak channels are this close.", "um", 1.0, 10000.0)
    spatial_bin_um: float = _p(40.0, "init_method=local: side of the square grid that groups peaks by the position "
                               "of their peak channel (Kilosort4 clusters per spatial bin likewise).", "um", 1.0,
                               10000.0)


@dataclass(frozen=True)
class ModelParams:
    """The CRsAE: unrolled encoder and sparsity prior."""
    encoder: str = _p("fista", "Unrolled encoder: 'fista' (FISTA, the CRsAE encoder), 'ista' (no momentum), "
                      "'reweighted' (a learned threshold per layer and template), 'reweighted-candes' (reweighted "
                      "l1 from the previous layer, nothing learned), 'learned-steps' (a learned step and threshold "
                      "scale per layer); its own options, if any, are in the section encoder:<name>. See "
                      "docs/how-it-works.md.", choices=tuple(ENCODER_OPTIONS))
    n_iterations: int = _p(50, "Iterations T unrolled in the encoder.", "", 1, 5000)
    radius_um: float = _p(100.0, "Each template keeps only the channels within this distance of its peak channel "
                          "(dense probes: H touches fewer channels); 0, or a probe whose channels all lie within "
                          "it (tetrodes), keeps every channel.", "um", 0.0, 10000.0)
    positive_codes: bool = _p(True, "One-sided shrinkage (non-negative spike amplitudes).")
    lambda_scale: float = _p(1.0, "Initial lambda as a multiple of the universal threshold sqrt(2 log(C N)).",
                             "", 0.05, 20.0)
    lambda_prior_strength: float = _p(1.0, "Gamma-prior pseudo-samples per code sample (r / N_e): lambda falls for "
                                      "atoms coding more than the mean atom, rises for those coding less; larger "
                                      "keeps every lambda closer to its start.", "", 0.0, 1e6)
    dictionary_gradient: str = _p("ae-ls", "How the dictionary's gradient is taken: 'ae-ls' backpropagates "
                                  "1/2 ||y - H z_T||^2 through the unrolled encoder (the CRsAE rule); 'ae-lasso' "
                                  "backpropagates the lasso objective through it; 'dec' detaches z_T first "
                                  "(decoder-only gradient, cheapest).",
                                  choices=tuple(DICTIONARY_GRADIENTS))


@dataclass(frozen=True)
class TrainParams:
    """Learning the dictionary and lambda on random windows."""
    window_ms: float = _p(30.0, "Length of each training window.", "ms", 2.0, 10000.0)
    n_windows: int = _p(640, "Random windows drawn from the recording (10 % held out).", "", 16, 1_000_000)
    batch_size: int = _p(32, "Windows per mini-batch.", "", 1, 65536)
    max_epochs: int = _p(2, "Upper bound on passes over the training windows.", "", 0, 10000)
    learning_rate: float = _p(5e-4, "Adam learning rate for the dictionary: a fine-tuning rate for clustered templates "
                              "(docs/benchmarks.md, Learning).", "", 0.0, 1.0, low_open=True)
    encoder_learning_rate: float = _p(0.1, "Adam learning rate for the encoder's own weights (log-scale per-layer "
                                      "steps and thresholds of encoder=reweighted or learned-steps; fista, ista "
                                      "and reweighted-candes have none). On the demo tetrode, learned-steps at "
                                      "T=12 scored 0.983 with 0.1 and 0.946 with 0.02.", "", 0.0, 1.0)
    patience: int = _p(4, "Stop after this many evaluations without held-out improvement (outlasts Adam's first "
                       "steps, which can raise the objective before it falls).", "", 1, 1000)
    eval_every: int = _p(5, "Mini-batches between held-out evaluations (with patience, the fewest steps "
                         "training runs when it never improves on the initial dictionary).", "", 1, 100000)


@dataclass(frozen=True)
class GrowParams:
    """Growing the dictionary after training: units the initial clustering missed, found in the residual y - Hz."""
    grow_rounds: int = _p(3, "Rounds of: encode held-out slices, cluster the peaks of the residual y - Hz, add an "
                          "atom per real unit, retrain briefly; stops early when a round adds nothing. 0: off. Runs "
                          "on probes of up to 64 channels; skipped on larger ones clustered per neighbourhood "
                          "(init_method=local), where clustering the whole probe at once does not scale.",
                          "", 0, 20)
    grow_duration_s: float = _p(20.0, "Seconds of recording (random 1-s slices, other than init's) whose "
                                "residual is searched; the brief retraining runs on them too.", "s", 1.0, 3600.0)
    grow_min_spikes: int = _p(20, "A residual cluster needs this many peaks to become an atom.", "", 5, 1_000_000)
    grow_max_isi_violations: float = _p(0.02, "Largest fraction of a residual cluster's inter-spike intervals "
                                        "shorter than 1.5 ms (a unit's refractory period).", "", 0.0, 1.0)
    grow_epochs: int = _p(1, "Passes over the growth slices' windows to retrain after atoms are added.", "", 1, 100)


@dataclass(frozen=True)
class InferenceParams:
    """Encoding the whole recording and reading spikes out of the codes."""
    chunk_duration_s: float = _p(10.0, "Recording processed per chunk; bounds memory.", "s", 0.05, 600.0)
    screen_fraction: float = _p(1.0, "FISTA and ISTA start their working set of code entries where (H^T y)_c "
                                "reaches this fraction of lambda_c and grow it until no entry outside would "
                                "become non-zero; other encoders run on stretches around where max_c "
                                "(H^T y)_c / lambda_c reaches it. 0 encodes every sample densely.", "", 0.0, 1.0)
    amplitude_fraction: float = _p(0.3, "Discard code peaks below this fraction of the template's reference "
                                   "amplitude (the median amplitude of its initial cluster).", "", 0.0, 1.0)
    amplitude_spread: float = _p(0.2, "Relative spread of a unit's spike amplitudes: a code peak goes to the atom of "
                                 "similar shape (best-lag cosine > 0.7) whose size fits it best, under a Gaussian prior "
                                 "of this relative width around each atom's reference amplitude. 0 keeps the encoder's "
                                 "atom.", "", 0.0, 10.0)
    refractory_ms: float = _p(1.0, "Code peaks of one template closer than this are one spike.", "ms", 0.0, 20.0)
    duplicate_ms: float = _p(0.3, "Spikes of two templates of similar shape (best-lag cosine > 0.7) closer than this "
                             "are one event: the larger code amplitude keeps it (the other atom coded the misfit). "
                             "0 keeps both.", "ms", 0.0, 5.0)
    min_spikes: int = _p(10, "Units with fewer spikes are dropped.", "", 0, 1_000_000)


@dataclass(frozen=True)
class CurationParams:
    """Quality labels good, mua, noise: SpikeInterface's metrics, Bombcell's rules (curate.py, docs/how-it-works.md)."""
    label_units: bool = _p(True, "Label each unit good, mua or noise (3-6 s on small recordings); false skips it.")
    remove_labels: str = _p("none", "Units removed by label (labelled even when label_units is false): 'none' keeps "
                            "all; 'noise,mua' keeps the good ones.", choices=("none", "noise", "noise,mua"))


@dataclass(frozen=True)
class RunParams:
    """Where and how the run executes."""
    device: str = _p("auto", "Torch device: 'auto' (cuda if available, else cpu), 'cpu', 'cuda' or 'cuda:N'.")
    seed: int = _p(0, "Random seed for window sampling, clustering and training.", "", 0, 2**32 - 1)
    num_threads: int = _p(0, "CPU threads for torch; 0: every CPU this process may use (its affinity), or "
                          "OMP_NUM_THREADS when a job engine set it lower. Never more than the usable CPUs.",
                          "", 0, 1024)


SECTIONS = {
    "preprocess": PreprocessParams,
    "init": InitParams,
    "model": ModelParams,
    "train": TrainParams,
    "grow": GrowParams,
    "inference": InferenceParams,
    "curation": CurationParams,
    "run": RunParams,
}
#: each encoder's own options, a section ``encoder:<name>`` (only encoders that have options)
ENCODER_SECTIONS = {f"encoder:{name}": klass for name, klass in ENCODER_OPTIONS.items() if dataclasses.fields(klass)}


def _all_sections() -> dict[str, type]:
    return {**SECTIONS, **ENCODER_SECTIONS}


def _default_encoders() -> dict:
    return {name: klass() for name, klass in ENCODER_OPTIONS.items()}


@dataclass(frozen=True)
class SortParams:
    """All parameters of one sort, grouped by pipeline stage; ``encoders`` holds each encoder's options."""
    preprocess: PreprocessParams = field(default_factory=PreprocessParams)
    init: InitParams = field(default_factory=InitParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    grow: GrowParams = field(default_factory=GrowParams)
    inference: InferenceParams = field(default_factory=InferenceParams)
    curation: CurationParams = field(default_factory=CurationParams)
    run: RunParams = field(default_factory=RunParams)
    encoders: dict = field(default_factory=_default_encoders)

    def encoder_options(self):
        """The options of the chosen encoder (``model.encoder``)."""
        return self.encoders[self.model.encoder]

    @classmethod
    def from_dict(cls, flat: dict[str, Any] | None = None) -> "SortParams":
        """Build from flat ``{key: value}``; strings are parsed (``"30"``, ``"true"``); validated."""
        flat = dict(flat or {})
        sections_of = _all_sections()
        known = {f.name: sec for sec, klass in sections_of.items() for f in dataclasses.fields(klass)}
        unknown = sorted(set(flat) - set(known))
        if unknown:
            raise InputError(f"unknown parameter(s) {', '.join(with_suggestion(u, known) for u in unknown)}; "
                             "see `crsae-sort params` for the list")
        built = {}
        for sec, klass in sections_of.items():
            hints = get_type_hints(klass)
            kwargs = {}
            for f in dataclasses.fields(klass):
                if f.name in flat:
                    kwargs[f.name] = coerce(f.name, flat[f.name], hints[f.name])
                    check(f, kwargs[f.name])
            built[sec] = klass(**kwargs)
        encoders = _default_encoders()
        encoders.update({sec.split(":", 1)[1]: built.pop(sec) for sec in ENCODER_SECTIONS})
        params = cls(**built, encoders=encoders)
        chosen = f"encoder:{params.model.encoder}"
        # another encoder's option at its default is harmless (a full dict of defaults, the plugin's, has them all)
        foreign = sorted(k for k in flat if known[k] in ENCODER_SECTIONS and known[k] != chosen
                         and getattr(encoders[known[k].split(":", 1)[1]], k) != _default_of(ENCODER_SECTIONS[known[k]], k))
        if foreign:
            raise InputError(f"parameter(s) {', '.join(foreign)} belong to another encoder than "
                             f"encoder={params.model.encoder}; set encoder too, or drop them")
        _check_cross(params)
        return params

    def to_dict(self) -> dict[str, Any]:
        """Flat ``{key: value}`` of every parameter."""
        out = {f.name: getattr(getattr(self, sec), f.name)
               for sec in SECTIONS for f in dataclasses.fields(getattr(self, sec))}
        for options in self.encoders.values():
            out.update({f.name: getattr(options, f.name) for f in dataclasses.fields(options)})
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def describe() -> list[dict[str, Any]]:
    """One row per parameter: section, name, type, default, unit, bounds, help."""
    rows = []
    for sec, klass in _all_sections().items():
        hints = get_type_hints(klass)
        for f in dataclasses.fields(klass):
            m = f.metadata
            rows.append(dict(section=sec, name=f.name, type=hints[f.name].__name__, default=f.default,
                             unit=m["unit"], bounds=bounds_text(f), help=m["help"]))
    return rows


def _default_of(klass: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(klass) if f.name == name)


def default_params() -> dict[str, Any]:
    return SortParams().to_dict()


def with_suggestion(name: str, known) -> str:
    """``name``, with the closest known parameter name if one is close (``n_iteration`` -> ``n_iterations``)."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f"{name} (did you mean {close[0]}?)" if close else name


def _check_cross(p: SortParams) -> None:
    if p.preprocess.freq_min_hz >= p.preprocess.freq_max_hz:
        raise InputError(f"freq_min_hz={p.preprocess.freq_min_hz} must be below freq_max_hz={p.preprocess.freq_max_hz}")
    if p.init.n_templates > p.init.max_templates:
        raise InputError(f"n_templates={p.init.n_templates} exceeds max_templates={p.init.max_templates}; "
                         "raise max_templates too")
    dev = p.run.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise InputError(f"parameter device={dev!r} must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
