"""Growing the dictionary from what the trained model cannot explain: the residual ``y - H z``.

A unit the initial clustering missed is lost to training (no step adds an atom), but its spikes
stay in the residual: the model codes every spike its atoms can explain, and ``y - H z`` keeps
the rest. Each round (at most ``grow_rounds``):

1. encode ``grow_duration_s`` of random 1-s slices of the recording (drawn with another seed than
   the initial dictionary's) and form the residual of what the read-out reports, ``r = y - H z_kept``
   ``(M, n)``, in model units (whitened, noise standard deviation 1): ``z_kept`` keeps the codes at the
   spikes the read-out keeps (and what other atoms coded with them), so an event coded only below the
   amplitude floor (a smaller unit that a larger atom of a similar shape codes at a fraction of its
   amplitude) stays in the residual, where it can become an atom;
2. detect negative peaks of ``r`` beyond ``detect_threshold`` and cluster their snippets exactly as
   the initial dictionary does (:func:`~crsae_sort.init_dictionary.detect_and_cut`,
   :func:`~crsae_sort.init_dictionary.cluster_snippets`, global clustering);
3. a cluster becomes an atom (its median snippet, unit norm; its norm is the reference amplitude)
   only when it looks like a unit: at least ``grow_min_spikes`` peaks, a median snippet whose peak
   reaches ``detect_threshold``, at most ``grow_max_isi_violations`` of its inter-spike intervals
   under ``REFRACTORY_MS``, not an existing or just-accepted atom (the one rule of
   :func:`~crsae_sort.units.same_unit`: same shape and amplitude), and mostly not coincident with the
   existing atoms' spikes (the misfit of a unit already explained, not a new one: ``MAX_COINCIDENT``);
4. split every atom whose spikes' snippets fall into distinct units (:mod:`crsae_sort.split`: the
   atom coded a unit the initial clustering missed or merged; its residual is only their difference);
5. retrain the grown model briefly (``grow_epochs`` passes over at most a quarter as many windows as
   training used, cut from the same slices); stop when a round adds and splits nothing.

Each candidate's evidence is logged, accepted or not; the accepted ones are returned
(:class:`~crsae_sort.summary.GrownAtom`) and their atoms carry ``origin = "residual"``.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .assign import alike_atoms
from .infer import above_floor, code_peaks, encode_screened, peak_offsets, working_set_table
from .io.checkpoints import checkpointed
from .init_dictionary import channel_locations_um, cluster_snippets, detect_and_cut, random_slices
from .model.crsae import CRsAE
from .model.losses import universal_lambda
from .params import SortParams
from .split import find_splits
from .units import REFRACTORY_MS, isi_violations, same_unit, similarity_and_ratio
from .summary import GrownAtom
from .train import train, window_samples

logger = logging.getLogger(__name__)

SEED_OFFSET = 7919        # growth slices are drawn with seed + this (not the initial dictionary's slices)
COINCIDENT_MS = 0.5       # a residual peak this close to a spike of an existing atom is coincident with it
MAX_COINCIDENT = 0.5      # largest fraction of a new cluster's peaks coincident with one existing atom's spikes
MAX_CHANNELS = 64         # growth clusters residual snippets on all channels at once: on dense probes of more
                          # channels it is skipped (60 s of 32 / 64 channels: 3.9 / 6.1 s, +20 % of the sort)
RETRAIN_SHARE = 4         # brief retraining: at most n_windows / this windows (and 4 batches), grow_epochs passes


@checkpointed
@dataclass
class GrowthResult:
    """What growth did: the atoms it added (with their evidence) and the rounds it ran."""
    added: list[GrownAtom] = field(default_factory=list)
    rounds: int = 0
    residual_peaks: list[int] = field(default_factory=list)   # residual peaks detected per round
    seconds: float = 0.0


def grow(model: CRsAE, recording, params: SortParams, n_before: int, *,
         progress: bool = False) -> tuple[CRsAE, GrowthResult]:
    """Add an atom for each unit in the residual of ``model`` on ``recording`` (unit noise); retrain.

    ``n_before`` is the atoms' samples before their peak (the initial dictionary's). Returns the grown
    model (``model`` itself when nothing was added) and what was added, round by round.
    """
    g, seed = params.grow, params.run.seed
    result = GrowthResult()
    if g.grow_rounds == 0:
        return model, result
    t0, fs, k = time.perf_counter(), recording.get_sampling_frequency(), model.dictionary.shape[-1]
    slices = random_slices(recording, g.grow_duration_s, seed + SEED_OFFSET)
    traces = [np.ascontiguousarray(recording.get_traces(segment_index=s, start_frame=a, end_frame=b).T,
                                   dtype=np.float32) for s, a, b in slices]          # each (M, n)
    seconds = sum(t.shape[1] for t in traces) / fs
    n_window = window_samples(params, fs, k)
    for r in range(1, g.grow_rounds + 1):
        residual, codes = _residual(model, traces, params, fs)
        offsets = peak_offsets(model.dictionary)
        spikes = [(pos + offsets[atoms], atoms) for pos, atoms in codes]           # samples of each spike
        snippets, where = _residual_peaks(recording, residual, params, n_before, k)
        result.rounds, result.residual_peaks = r, result.residual_peaks + [len(snippets)]
        accepted = _accept(model, snippets, where, spikes, params, fs, seconds)
        scaled = model.dense_dictionary().cpu().numpy() * model.reference_amplitude.cpu().numpy()[:, None, None]
        splits = find_splits(scaled, traces, codes, params, fs, seconds)
        logger.info("growth round %d: %d residual peaks in %.0f s of held-out slices, %d new atom(s) from the "
                    "residual, %d atom(s) split", r, len(snippets), seconds, len(accepted), len(splits))
        if not accepted and not splits:
            break
        for c, children in splits.items():
            (first, atom), rest = children[0], children[1:]
            model.replace_atom(c, torch.from_numpy(atom), first.amplitude, "split")
            result.added.append(dataclasses.replace(first, round=r, atom=c))
            result.added += _evidence(rest, r, len(model.origin))
            model = _add(model, rest, recording, params, n_window=n_window, origin="split")
        result.added += _evidence(accepted, r, len(model.origin))
        model = _add(model, accepted, recording, params, n_window=n_window, origin="residual")
        at_most = max(params.train.n_windows // RETRAIN_SHARE, 4 * params.train.batch_size)
        windows = _windows(traces, n_window, at_most, seed + r)
        if len(windows) < 4:
            logger.info("growth: %d windows are too few to retrain; the new atoms stay as cut", len(windows))
            continue
        short = dataclasses.replace(params.train, max_epochs=g.grow_epochs)
        train(model, windows, short, lambda_prior_strength=params.model.lambda_prior_strength, seed=seed + r,
              progress=progress, dictionary_gradient=params.model.dictionary_gradient)
    result.seconds = time.perf_counter() - t0
    return model, result


def _evidence(pairs: list, round_: int, first_atom: int) -> list[GrownAtom]:
    """The evidence of atoms about to be appended at ``first_atom``, ``first_atom + 1``, ..."""
    return [dataclasses.replace(ev, round=round_, atom=first_atom + i) for i, (ev, _) in enumerate(pairs)]


@torch.no_grad()
def _residual(model: CRsAE, traces: list[np.ndarray], params: SortParams,
              fs: float) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """Per slice, the residual of the read-out ``y - H z_kept`` ``(n, M)`` (:func:`_spikes_only`; zero within
    ``K`` samples of the slice's ends, where spikes are cut off) and the existing atoms' spikes as ``(code
    positions, atoms)``, read out as inference does (a spike's sample is its code position plus its atom's
    peak offset)."""
    device, k = model.dictionary.device, model.dictionary.shape[-1]
    refractory = max(1, int(round(params.inference.refractory_ms * fs / 1000)))
    reference = model.reference_amplitude.cpu().numpy()
    offsets = peak_offsets(model.dictionary)
    residual, codes = [], []
    table = working_set_table(model, params.inference.screen_fraction)
    alike = alike_atoms(model.dense_dictionary()) if params.inference.amplitude_spread > 0 else None
    for trace in traces:
        y = torch.from_numpy(trace).to(device)
        z = encode_screened(model, y, params.inference.screen_fraction, table=table)
        pos, unit, amp = code_peaks(model, y, z, refractory, offsets, params.inference.amplitude_spread, alike)
        keep = above_floor(amp, unit, reference, params.inference.amplitude_fraction)
        r = (y - model.decode(_spikes_only(z, pos[keep], unit[keep], offsets, refractory)[None])[0]).cpu().numpy().T
        r[:k], r[-k:] = 0.0, 0.0
        residual.append(np.ascontiguousarray(r))
        codes.append((pos[keep], unit[keep]))
    return residual, codes


def _spikes_only(z: torch.Tensor, pos: np.ndarray, unit: np.ndarray, offsets: np.ndarray, within: int) -> torch.Tensor:
    """The codes ``z`` ``(C, n)`` of the events the read-out reports: every atom's codes whose spike time
    (code position + the atom's peak offset ``offsets`` ``(C,)``) lies within ``within`` samples of a kept
    spike ``(pos, unit)`` (the spike and the misfit other atoms coded with it); every other entry zero."""
    n = z.shape[1]
    near = np.zeros(n + int(offsets.max()) + 1, dtype=bool)
    times = pos + offsets[unit]
    for d in range(-within, within + 1):
        near[np.clip(times + d, 0, len(near) - 1)] = True
    rows = np.arange(n)[None, :] + offsets[:, None]                          # (C, n): each code's spike time
    keep = torch.from_numpy(near[rows]).to(z.device)
    return torch.where(keep, z, torch.zeros_like(z))


def _residual_peaks(recording, residual: list[np.ndarray], params: SortParams, n_before: int,
                    k: int) -> tuple[np.ndarray, np.ndarray]:
    """Snippets ``(n, K, M)`` around the residual's negative peaks and their ``(slice, sample)`` ``(n, 2)``."""
    from spikeinterface.core import NumpyRecording

    res = NumpyRecording(residual, sampling_frequency=recording.get_sampling_frequency())
    res.set_dummy_probe_from_locations(channel_locations_um(recording))  # positions only: a bare array
    return detect_and_cut(res, [(i, 0, len(r)) for i, r in enumerate(residual)], params.init.detect_threshold,
                          n_before, k - n_before)


def _accept(model: CRsAE, snippets: np.ndarray, where: np.ndarray, spikes: list, params: SortParams, fs: float,
            seconds: float) -> list[tuple[GrownAtom, np.ndarray]]:
    """The residual clusters that look like units (module docstring): their evidence and atoms ``(M, K)``."""
    g = params.grow
    if len(snippets) < g.grow_min_spikes:
        return []
    labels = cluster_snippets(snippets, params.init, params.run.seed)
    scale = model.reference_amplitude.cpu().numpy()[:, None, None]
    existing = (model.dense_dictionary().cpu().numpy() * scale).transpose(0, 2, 1)   # (C, K, M), at amplitude
    accepted, order = [], sorted((u for u in np.unique(labels) if u >= 0), key=lambda u: -(labels == u).sum())
    for u in order:
        members = labels == u
        median = np.median(snippets[members], axis=0)                          # (K, M)
        norm = float(np.linalg.norm(median))
        others = np.concatenate([existing] + [[ev.amplitude * a.T] for ev, a in accepted])
        pair_sim, ratio = similarity_and_ratio(median[None], others)
        same = same_unit(pair_sim, ratio, params.init.merge_similarity, params.init.merge_amplitude_ratio)[0]
        sim = pair_sim[0]
        best = int(np.argmax(np.where(same, np.inf, sim))) if len(sim) else -1
        coincident, with_atom = _coincidence(where[members], spikes, len(existing), fs)
        ev = GrownAtom(round=0, atom=-1, n_spikes=int(members.sum()), rate_hz=float(members.sum() / seconds),
                       peak_sigma=float(np.abs(median).max()), amplitude=norm,
                       isi_violations=isi_violations(where[members], fs),
                       max_similarity=float(sim[best]) if best >= 0 else 0.0, similar_to=best,
                       coincident=coincident, coincident_with=with_atom,
                       peak_channel=int(np.abs(median).max(axis=0).argmax()))
        reason = _rejection(ev, params, is_known=best >= 0 and bool(same[best]))
        logger.info("growth candidate: %s -> %s", _describe(ev), reason or "added")
        if reason is None:
            accepted.append((ev, np.ascontiguousarray(median.T / max(norm, 1e-12))))
    return accepted


def _rejection(ev: GrownAtom, params: SortParams, is_known: bool = False) -> str | None:
    """Why a residual cluster is not a unit, or None when it is one."""
    g, threshold = params.grow, params.init.detect_threshold
    if ev.n_spikes < g.grow_min_spikes:
        return f"rejected: {ev.n_spikes} < grow_min_spikes={g.grow_min_spikes} peaks"
    if ev.peak_sigma < threshold:
        return f"rejected: peak {ev.peak_sigma:.1f} sigma < detect_threshold={threshold:g}"
    if ev.isi_violations > g.grow_max_isi_violations:
        return (f"rejected: {100 * ev.isi_violations:.1f} % of ISIs < {REFRACTORY_MS:g} ms > "
                f"grow_max_isi_violations={g.grow_max_isi_violations:g}")
    if is_known:
        return (f"rejected: atom {ev.similar_to} (similarity {ev.max_similarity:.2f} > "
                f"merge_similarity={params.init.merge_similarity:g}, amplitudes within "
                f"merge_amplitude_ratio={params.init.merge_amplitude_ratio:g})")
    if ev.coincident > MAX_COINCIDENT:
        return (f"rejected: {100 * ev.coincident:.0f} % of its peaks fall on spikes of atom {ev.coincident_with} "
                f"(that atom's misfit: the split check looks at its spikes)")
    return None


def _describe(ev: GrownAtom) -> str:
    return (f"{ev.n_spikes} peaks ({ev.rate_hz:.1f} Hz), peak {ev.peak_sigma:.1f} sigma on channel "
            f"{ev.peak_channel}, ISI violations {100 * ev.isi_violations:.1f} %, similarity {ev.max_similarity:.2f} "
            f"to atom {ev.similar_to}, {100 * ev.coincident:.0f} % coincident with atom {ev.coincident_with}")


def _coincidence(where: np.ndarray, spikes: list, n_atoms: int, fs: float) -> tuple[float, int]:
    """The largest fraction of peaks ``where`` ``(n, 2)`` within ``COINCIDENT_MS`` of one existing atom's
    spikes, and that atom (``-1`` when there are no spikes)."""
    tol = COINCIDENT_MS * fs / 1000
    hits = np.zeros(n_atoms)
    for s in np.unique(where[:, 0]):
        samples, atoms = spikes[s]
        mine = where[where[:, 0] == s, 1]
        for c in np.unique(atoms):
            theirs = np.sort(samples[atoms == c])
            i = np.searchsorted(theirs, mine)
            left, right = theirs[np.clip(i - 1, 0, len(theirs) - 1)], theirs[np.clip(i, 0, len(theirs) - 1)]
            hits[c] += np.sum(np.minimum(np.abs(left - mine), np.abs(right - mine)) <= tol)
    if not hits.any():
        return 0.0, -1
    c = int(np.argmax(hits))
    return float(hits[c] / len(where)), c


def _add(model: CRsAE, accepted: list[tuple[GrownAtom, np.ndarray]], recording, params: SortParams, *,
         n_window: int, origin: str) -> CRsAE:
    """``model`` with the accepted atoms ``(M, K)`` appended: lambda at ``lambda_scale`` x the universal
    threshold for windows of ``n_window`` samples (as the initial model's), the cluster's median amplitude
    as reference amplitude, and, when the model is local, supports within ``radius_um`` of each new
    atom's peak channel."""
    if not accepted:
        return model
    new = torch.from_numpy(np.stack([atom for _, atom in accepted]))          # (A, M, K), unit norm
    n_atoms, k = len(model.origin) + len(new), new.shape[-1]
    lam = torch.full((len(new),), params.model.lambda_scale * universal_lambda(n_atoms, n_window - k + 1))
    reference = torch.tensor([ev.amplitude for ev, _ in accepted])
    local = {}
    if model.is_local:
        from .model.local_operator import channel_supports

        peaks = new.abs().amax(dim=2).argmax(dim=1).numpy()
        support, mask = channel_supports(channel_locations_um(recording), peaks, params.model.radius_um)
        local = dict(support=support, mask=mask)
    return model.with_atoms(new, lam, reference, origin, **local)


def _windows(traces: list[np.ndarray], n_window: int, at_most: int, seed: int) -> np.ndarray:
    """Up to ``at_most`` non-overlapping windows ``(n, M, n_window)`` cut from the slices ``(M, n_i)``
    (a seeded random choice when there are more)."""
    parts = [t[:, : (t.shape[1] // n_window) * n_window].reshape(t.shape[0], -1, n_window).transpose(1, 0, 2)
             for t in traces]
    windows = np.concatenate(parts)
    if len(windows) > at_most:
        windows = windows[np.sort(np.random.default_rng(seed).choice(len(windows), at_most, replace=False))]
    return np.ascontiguousarray(windows, dtype=np.float32)
