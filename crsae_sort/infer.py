"""Encoding the whole recording chunk by chunk, and reading spikes out of the codes.

Chunks ``[start, end)`` are read with a margin on each side, encoded, and a spike is kept only
if its time falls inside ``[start, end)``: a spike near a chunk boundary is seen by both chunks
but belongs to exactly one. Memory is set by ``chunk_duration_s``, not by recording length.

Where codes can be non-zero. At ``z = 0`` the first step is ``shrink(H^T y / L, lambda / L)``, so a
code can only grow where ``(H^T y)_c`` is near ``lambda_c``. FISTA and ISTA (encoders that declare
``supports_working_set``) run on a working set of code entries ``(c, n)`` starting from those with
``(H^T y)_c[n] >= screen_fraction lambda_c``, enlarged until no entry outside it violates the
optimality condition (:mod:`crsae_sort.model.working_set`): the same T iterations as the dense
encoder, at the cost of one dense correlation instead of 2T dense convolutions (on the CPU; a
GPU runs the stretches below). Other encoders that declare ``supports_screening`` run on the stretches of samples where
``max_c (H^T y)_c / lambda_c >= screen_fraction``, dilated by ``2 K`` on each side (batched); a
learned encoder whose first layer thresholds at ``g lambda_c`` with ``g < 1``
(:meth:`Encoder.threshold_floor`) screens at ``g screen_fraction``. ``screen_fraction = 0``
encodes every sample with the dense encoder. The chunk margin is the encoder's own
(:meth:`Encoder.margin`).

Read-out: spike candidates are the local maxima of each code train ``z_c`` (within
``refractory_ms``); the amplitude is the code mass within one sample of the peak, and the spike
time is the code position plus the template's peak offset (the sample of its largest
absolute value).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .assign import alike_atoms, assign_by_size, one_per_refractory, smaller_of_close_pairs
from .chunks import chunks
from .errors import option
from .model.crsae import CRsAE
from .model.working_set import WorkingSetCounts
from .oom import run_in_parts
from .params import InferenceParams

logger = logging.getLogger(__name__)

ROW = 4096  # samples per packed row of screened segments


@dataclass
class Spikes:
    """Spike candidates, one entry per spike (all arrays the same length)."""
    sample_index: np.ndarray    # int64, sample within its segment
    segment_index: np.ndarray   # int64
    unit_index: np.ndarray      # int64, template index
    amplitude: np.ndarray       # float32, code mass (whitened noise units times unit-norm template)
    below_floor: np.ndarray | None = None   # (n_atoms,) int64: code peaks the amplitude floor discarded

    @classmethod
    def empty(cls) -> "Spikes":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))

    @classmethod
    def concatenate(cls, parts: list["Spikes"]) -> "Spikes":
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("sample_index", "segment_index", "unit_index", "amplitude")))

    def select(self, mask: np.ndarray) -> "Spikes":
        return Spikes(self.sample_index[mask], self.segment_index[mask], self.unit_index[mask], self.amplitude[mask])


def peak_offsets(dictionary: torch.Tensor) -> np.ndarray:
    """Per template, the sample of its largest absolute value ``(n_atoms,)``: code -> spike time."""
    return dictionary.detach().abs().amax(dim=1).argmax(dim=1).cpu().numpy()


@torch.no_grad()
def detect_spikes(model: CRsAE, recording, params: InferenceParams, progress: bool = False) -> Spikes:
    """Encode every segment of ``recording`` (unit noise, the model's channels) and return spikes.

    Code peaks of at least ``amplitude_fraction`` x the template's reference amplitude are spikes; the
    others are counted per template in ``below_floor``.
    """
    fs = recording.get_sampling_frequency()
    k = model.dictionary.shape[-1]
    chunk = max(int(params.chunk_duration_s * fs), 8 * k)
    refractory = max(1, int(round(params.refractory_ms * fs / 1000)))
    offsets = peak_offsets(model.dictionary)
    reference = model.reference_amplitude.cpu().numpy()
    device = model.dictionary.device
    parts, below = [], np.zeros(model.dictionary.shape[0], np.int64)
    lengths = [recording.get_num_samples(seg) for seg in range(recording.get_num_segments())]
    bounds = list(chunks(lengths, chunk, model.encoder.margin(k)))
    from tqdm.auto import tqdm

    counts = {}
    table = working_set_table(model, params.screen_fraction)
    alike = alike_atoms(model.dense_dictionary()) if params.amplitude_spread > 0 else None
    for c in tqdm(bounds, desc="inference", unit="chunk", disable=not progress, leave=False):
        if c.hi - c.lo < k:
            continue
        traces = recording.get_traces(segment_index=c.segment, start_frame=c.lo, end_frame=c.hi)
        y = _channels_first(traces).to(device)
        z = encode_screened(model, y, params.screen_fraction, counts, table)
        pos, unit, amp = code_peaks(model, y, z, refractory, offsets, params.amplitude_spread, alike)
        times = pos + offsets[unit] + c.lo
        keep = (times >= c.start) & (times < c.end)
        n = int(keep.sum())
        found = Spikes(times[keep].astype(np.int64), np.full(n, c.segment, np.int64), unit[keep], amp[keep])
        kept = above_floor(found.amplitude, found.unit_index, reference, params.amplitude_fraction)
        below += np.bincount(found.unit_index[~kept], minlength=len(below))
        parts.append(found.select(kept))
    ws = counts.get("working_set")
    if ws is not None and ws.calls:
        logger.info("inference: the working set held %.2f %% of the code entries (screening at %.2f lambda), "
                    "%.1f rounds per chunk, %d of %d chunks fell back to the dense encoder",
                    100.0 * ws.in_set / ws.entries, params.screen_fraction, ws.rounds / ws.calls,
                    ws.dense_fallbacks, ws.calls)
    elif counts.get("total"):
        logger.info("inference: the encoder ran on %.1f %% of the code samples (screening at %.2f lambda)",
                    100.0 * counts["encoded"] / counts["total"], params.screen_fraction)
    within = max(0, int(round(params.duplicate_ms * fs / 1000)))
    spikes = drop_duplicates(Spikes.concatenate(parts), model, within)
    spikes.below_floor = below
    return spikes


def code_peaks(model: CRsAE, y: torch.Tensor, z: torch.Tensor, refractory: int, offsets: np.ndarray, spread: float,
               alike: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The read-out's code peaks ``(pos, unit, amp)`` of ``z`` (codes of ``y``; :func:`read_out`), each given to the
    alike atom its size fits (:func:`crsae_sort.assign.assign_by_size`; ``alike`` from
    :func:`crsae_sort.assign.alike_atoms`, None or ``spread = 0``: the encoder's atoms), one peak per atom within
    ``refractory`` samples. Inference and growth's residual read spikes out through it."""
    pos, unit, amp = read_out(z, refractory)
    if spread <= 0 or alike is None or not alike.any() or len(pos) == 0:
        return pos, unit, amp
    residual = y - model.decode(z[None])[0]
    pos, unit, amp = assign_by_size(residual, z, pos, unit, amp, model.dense_dictionary(), model.lam,
                                    model.reference_amplitude.cpu().numpy(), offsets, alike, spread)
    keep = one_per_refractory(pos, unit, amp, offsets, refractory)
    return pos[keep], unit[keep], amp[keep]


def _channels_first(traces: np.ndarray) -> torch.Tensor:
    """``traces`` ``(N, M)`` as a contiguous float32 tensor ``(M, N)``, a copy: torch's blocked, threaded transpose
    (numpy's ascontiguousarray(traces.T) took 3x as long on 384 channels). A read-only array (a recording held
    in memory) is only read."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")
        return torch.from_numpy(np.asarray(traces, dtype=np.float32)).T.contiguous()


def drop_duplicates(spikes: Spikes, model: CRsAE, within: int) -> Spikes:
    """``spikes`` without the smaller of two spikes of different, similar atoms at most ``within`` samples apart.

    When two atoms share much of their shape, the encoder can code one event with both: the atom that fits it
    at full amplitude, and the other at a small amplitude for what the first leaves (a real unit's spike read
    out twice; on the hybrid locust tetrode an SNR-12 unit's spikes also appeared in an SNR-6 unit, precision
    0.77). Of such a pair the spike of the larger code amplitude, the one that explains more of the signal
    (atoms have unit norm), is kept. Atoms of unlike shapes (cosine <= :data:`crsae_sort.assign.ALIKE`) keep both:
    two units firing together.
    """
    if within <= 0 or len(spikes.sample_index) < 2:
        return spikes
    alike = alike_atoms(model.dense_dictionary())
    drop = smaller_of_close_pairs(spikes.sample_index, spikes.segment_index, spikes.unit_index, spikes.amplitude,
                                  within, lambda a, b: (a != b) & alike[a, b])
    return spikes.select(~drop)


def above_floor(amplitude: np.ndarray, unit: np.ndarray, reference_amplitude: np.ndarray,
                fraction: float) -> np.ndarray:
    """The amplitude floor: ``amplitude >= fraction * reference_amplitude[unit]`` (boolean mask)."""
    return amplitude >= fraction * reference_amplitude[unit]


def working_set_table(model: CRsAE, screen_fraction: float) -> torch.Tensor | None:
    """The dictionary's Gram table when :func:`encode_screened` will use working sets, else None: compute it
    once per dictionary and pass it to every call."""
    return model.gram_table().detach() if model.uses_working_set(screen_fraction) else None


@torch.no_grad()
def encode_screened(model: CRsAE, y: torch.Tensor, screen_fraction: float,
                    counts: dict | None = None, table: torch.Tensor | None = None) -> torch.Tensor:
    """Codes ``(C, N - K + 1)`` of one multichannel signal ``y`` ``(M, N)``, the encoder only where needed.

    FISTA and ISTA on the CPU: on a working set (:meth:`CRsAE.encode_on_working_set`; ``table``, the
    model's :meth:`~crsae_sort.model.crsae.CRsAE.gram_table`, is computed there when not given). Other
    screening encoders: active code segments are packed into rows of at least ``ROW`` samples, separated
    by ``2K - 2`` zeros (no code can then touch two segments, so the segments are solved independently),
    and all rows are encoded as one batch. ``counts``, if given, accumulates what was encoded: ``working_set`` (a
    :class:`~crsae_sort.model.working_set.WorkingSetCounts`), or ``encoded`` and ``total`` code samples.
    """
    if model.uses_working_set(screen_fraction):
        ws = counts.setdefault("working_set", WorkingSetCounts()) if counts is not None else None
        return model.encode_on_working_set(y[None], screen_fraction, table, ws)[0]
    d, lam = model.dictionary, model.lam
    k = d.shape[-1]
    n_codes = y.shape[-1] - k + 1
    if counts is not None:
        counts["total"] = counts.get("total", 0) + n_codes
    if screen_fraction <= 0 or not model.encoder.supports_screening:
        if counts is not None:
            counts["encoded"] = counts.get("encoded", 0) + n_codes
        return model.encode(y[None])[0]
    corr = model.operator().H_adjoint(y[None])[0]
    score = ((corr if model.positive else corr.abs()) / lam[:, None]).amax(dim=0)
    pad = 2 * k
    # an encoder whose first layer thresholds below lambda / L (a learned one) lowers the screen as much
    screen = screen_fraction * min(1.0, model.encoder.threshold_floor())
    active = F.max_pool1d((score >= screen).float()[None, None], 2 * pad + 1, stride=1, padding=pad)
    segments = _runs(active[0, 0].cpu().numpy() > 0)
    if counts is not None:
        counts["encoded"] = counts.get("encoded", 0) + sum(int(b - a) for a, b in segments)
    z = y.new_zeros(d.shape[0], n_codes)
    if not segments:
        return z
    rows, placement = _pack(segments, k)
    batch = y.new_zeros(len(rows), y.shape[0], max(rows))
    for row, offset, a, b in placement:
        batch[row, :, offset: offset + b - a + k - 1] = y[:, a: b + k - 1]
    codes = _encode_rows(model, batch)
    for row, offset, a, b in placement:
        z[:, a:b] = codes[row, :, offset: offset + b - a]
    return z


def _encode_rows(model: CRsAE, batch: torch.Tensor) -> torch.Tensor:
    """Encode a batch of rows; on GPU out-of-memory in more, smaller parts (:mod:`crsae_sort.oom`)."""
    cpu = option("device='cpu'", "--device cpu")
    parts, _ = run_in_parts(model.encode, batch, what="rows of screened segments",
                            exhausted=f"out of GPU memory encoding a single row; lower chunk_duration_s or use {cpu}")
    return torch.cat(parts)


def _pack(segments: list[tuple[int, int]], k: int) -> tuple[list[int], list[tuple[int, int, int, int]]]:
    """Next-fit packing of code segments ``[a, b)`` into rows; returns row lengths and placements."""
    gap = 2 * k - 2
    width = max(ROW, max(b - a + k - 1 for a, b in segments))
    rows, placement = [0], []
    for a, b in segments:
        need = b - a + k - 1
        if rows[-1] and rows[-1] + gap + need > width:
            rows.append(0)
        offset = rows[-1] + (gap if rows[-1] else 0)
        placement.append((len(rows) - 1, offset, a, b))
        rows[-1] = offset + need
    return rows, placement


def read_out(z: torch.Tensor, refractory: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local maxima of each code train ``z`` ``(C, n)`` within ``refractory`` samples.

    Returns code positions, template indices and amplitudes (code mass at the peak +- 1 sample).
    """
    mag = z.abs()
    pooled = F.max_pool1d(mag[None], 2 * refractory + 1, stride=1, padding=refractory)[0]
    # strict local maximum, with ties broken towards the earliest sample
    earlier = F.pad(mag, (1, 0))[:, :-1]
    is_peak = (mag > 0) & (mag >= pooled) & (mag > earlier)
    unit, pos = torch.nonzero(is_peak, as_tuple=True)
    amp = code_mass(z)[unit, pos]
    return pos.cpu().numpy().astype(np.int64), unit.cpu().numpy().astype(np.int64), amp.cpu().numpy().astype(np.float32)


def code_mass(z: torch.Tensor) -> torch.Tensor:
    """``m_c[n] = z_c[n - 1] + z_c[n] + z_c[n + 1]`` ``(C, n)``: a spike's amplitude when its code spreads
    over neighbouring samples (a spike between two samples)."""
    return F.avg_pool1d(z[None], 3, stride=1, padding=1, count_include_pad=True)[0] * 3


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of True in a boolean vector."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))
