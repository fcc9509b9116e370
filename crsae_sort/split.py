"""Splitting an atom that codes two units: its spikes' snippets fall into distinct shapes or amplitudes.

When the initial clustering merged two units (or missed one whose spikes an atom of a roughly
similar shape then codes), one atom explains both: its code train is the union of two units' trains
and the residual keeps only the difference of their shapes. The evidence is in the data at the
atom's own spikes. For each atom ``c``, the snippets ``y[:, p : p + K]`` ``(M, K)`` at its code
positions ``p`` (the read-out's spikes on the growth slices) are clustered as the initial dictionary
clusters peaks (PCA, HDBSCAN: :func:`~crsae_sort.init_dictionary.cluster_snippets`); when that finds
one shape, or only one group that passes the checks below, by the modes of their amplitude along the
atom (:func:`amplitude_modes`). Clusters of at
least ``grow_min_spikes`` snippets whose peaks (each snippet's, noise included, as the detector sees a
spike) reach ``detect_threshold`` in the median, and with at most ``grow_max_isi_violations`` of
refractory violations, are merged back when they are one unit by the rule the initial clustering and
growth use (:func:`~crsae_sort.units.same_unit`: same shape, same amplitude, trains not independent);
when two or more remain, and they do not duplicate another atom, the atom is split: the largest
child replaces it, the others are appended, all with origin ``split``.

Snippets are ``(n, K, M)`` as the clustering code takes them; atoms ``(M, K)`` as the model holds them.
"""
from __future__ import annotations

import logging

import numpy as np

from .init_dictionary import cluster_snippets, template_similarity
from .params import SortParams
from .summary import GrownAtom
from .units import (INDEPENDENT, REFRACTORY_MS, UNKNOWN, isi_violations, same_unit, similarity_and_ratio,
                    trains_relation)

logger = logging.getLogger(__name__)


def find_splits(existing: np.ndarray, traces: list[np.ndarray], codes: list[tuple[np.ndarray, np.ndarray]],
                params: SortParams, fs: float, seconds: float) -> dict[int, list[tuple[GrownAtom, np.ndarray]]]:
    """Atoms to split: ``{atom: [(evidence, child atom (M, K) unit norm), ...]}`` (largest child first).

    ``existing`` ``(C, M, K)``: the dense atoms scaled by their reference amplitudes; ``traces`` the
    slices ``(M, n)``; ``codes`` per slice the read-out's ``(code positions, atoms)``; ``seconds`` the
    slices' total length.
    """
    g, k, out = params.grow, existing.shape[-1], {}
    for c in range(len(existing)):
        where = np.concatenate([np.stack([np.full(int((a == c).sum()), s), p[a == c]], axis=1)
                                for s, (p, a) in enumerate(codes)]).astype(np.int64)    # (n, 2): slice, position
        if len(where) < 2 * g.grow_min_spikes:
            continue
        snippets = np.stack([traces[s][:, p: p + k].T for s, p in where])              # (n, K, M)
        labels = cluster_snippets(snippets, params.init, params.run.seed)
        # two units' trains are independent, so together they break the refractory period; halves of one do not
        read_out_ms = params.inference.refractory_ms

        def relation(a, b):  # the read-out keeps one code peak per atom within refractory_ms: closer pairs unseen
            return trains_relation(where[a], where[b], fs, seconds, blind_ms=read_out_ms)

        # a child's spikes reach the detection threshold as the detector sees spikes: the median over its
        # snippets of each one's peak (noise included), not the peak of its median template
        peaks = np.abs(snippets).max(axis=(1, 2))

        def units(groups):  # the groups that can be units, largest first; the others independent of it
            out = sorted((m for m in groups if m.sum() >= g.grow_min_spikes
                          and np.median(peaks[m]) >= params.init.detect_threshold
                          and isi_violations(where[m], fs) <= g.grow_max_isi_violations), key=lambda m: -m.sum())
            return out[:1] + [m for m in out[1:] if relation(out[0], m) == INDEPENDENT]

        children = units(_merged_groups(snippets, [labels == u for u in np.unique(labels) if u >= 0], params,
                                        relation))
        if len(children) < 2:  # one shape (or only one group that can be a unit): units of the same shape can
            # still differ in amplitude (kept apart only if their trains are independent)
            children = units(amplitude_modes(snippets, existing[c].T, params.run.seed))
        medians = np.stack([np.median(snippets[m], axis=0) for m in children]) if children else snippets[:0]
        kept = _not_duplicates(medians, existing, c, params)
        if len(children) < 2 or kept[:1] != [0] or len(kept) < 2:
            continue
        sim = template_similarity(medians[kept].astype(np.float64))
        result = []
        for rank, i in enumerate(kept):
            median, norm, n = medians[i], float(np.linalg.norm(medians[i])), int(children[i].sum())
            ev = GrownAtom(round=0, atom=c if rank == 0 else -1, n_spikes=n, rate_hz=n / seconds,
                           peak_sigma=float(np.abs(median).max()), amplitude=norm,
                           isi_violations=isi_violations(where[children[i]], fs),
                           max_similarity=float(np.max(np.delete(sim[rank], rank))), similar_to=c, coincident=0.0,
                           coincident_with=-1, peak_channel=int(np.abs(median).max(axis=0).argmax()), origin="split")
            result.append((ev, np.ascontiguousarray(median.T / max(norm, 1e-12))))
        logger.info("split of atom %d (%d spikes, %.1f %% of ISIs < %g ms): %s", c, len(where),
                    100 * isi_violations(where, fs), REFRACTORY_MS,
                    "; ".join(f"{ev.n_spikes} spikes, peak {ev.peak_sigma:.1f} sigma on channel {ev.peak_channel}, "
                              f"ISI violations {100 * ev.isi_violations:.1f} %" for ev, _ in result))
        out[c] = result
    return out


def amplitude_modes(snippets: np.ndarray, atom: np.ndarray, seed: int, max_modes: int = 4) -> list[np.ndarray]:
    """Groups (boolean masks) of ``snippets`` ``(n, K, M)`` by their amplitude along ``atom`` ``(K, M)``.

    The amplitude of snippet ``i`` is its projection ``a_i = <y_i, h> / ||h||`` on the atom (its code,
    up to the encoder's shrinkage). A Gaussian mixture of 1 to ``max_modes`` components is fitted to
    ``a`` and the count with the lowest BIC is kept; each component (hard assignment) is a group.
    One group when one Gaussian explains the amplitudes best. Units of one shape at different
    distances from the probe differ only in amplitude, which the snippets' principal components
    (dominated by noise for weak units) may not separate. Modes are kept apart only when their trains
    are independent (:func:`~crsae_sort.units.trains_relation`): parts of one unit's amplitude spread share
    its refractory period, two units do not.
    """
    from sklearn.mixture import GaussianMixture

    a = np.einsum("nkm,km->n", snippets.astype(np.float64), atom / max(float(np.linalg.norm(atom)), 1e-12))
    if len(a) < 2 * max_modes:
        return [np.ones(len(a), dtype=bool)]
    fits = [GaussianMixture(n, random_state=seed).fit(a[:, None]) for n in range(1, max_modes + 1)]
    best = fits[int(np.argmin([f.bic(a[:, None]) for f in fits]))]
    labels = best.predict(a[:, None])
    return [labels == u for u in np.unique(labels)]


def _merged_groups(snippets: np.ndarray, groups: list[np.ndarray], params: SortParams,
                   relation=lambda a, b: UNKNOWN) -> list[np.ndarray]:
    """Clusters (boolean masks over ``snippets``) merged greedily, most similar pair first, while two are one
    unit (:func:`~crsae_sort.units.same_unit` on their median snippets, with ``relation(a, b)`` of their
    trains: units of one shape and nearly one amplitude, which the initial clustering merged, stay apart)."""
    groups = list(groups)
    while len(groups) > 1:
        medians = np.stack([np.median(snippets[m], axis=0) for m in groups])
        sim, ratio = similarity_and_ratio(medians)
        rel = np.full(sim.shape, UNKNOWN, dtype=object)
        for i, j in zip(*np.nonzero(np.triu(sim > params.init.merge_similarity, k=1))):  # trains where shapes agree
            rel[i, j] = rel[j, i] = relation(groups[i], groups[j])
        same = same_unit(sim, ratio, params.init.merge_similarity, params.init.merge_amplitude_ratio, rel)
        np.fill_diagonal(same, False)
        if not same.any():
            break
        i, j = np.unravel_index(np.argmax(np.where(same, sim, -np.inf)), sim.shape)
        groups[i] = groups[i] | groups[j]
        del groups[j]
    return groups


def _not_duplicates(children: np.ndarray, existing: np.ndarray, parent: int, params: SortParams) -> list[int]:
    """Children ``(n, K, M)`` that are not another atom than ``parent`` (:func:`~crsae_sort.units.same_unit`;
    the atoms' trains are not at hand here, so shape and amplitude decide)."""
    others = np.delete(existing, parent, axis=0).transpose(0, 2, 1)                      # (C - 1, K, M)
    if not len(others):
        return list(range(len(children)))
    sim, ratio = similarity_and_ratio(children, others)
    same = same_unit(sim, ratio, params.init.merge_similarity, params.init.merge_amplitude_ratio)
    return [i for i in range(len(children)) if not same[i].any()]
