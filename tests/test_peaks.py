"""Locally exclusive peak detection: known answers, and the same peaks as SpikeInterface's numba kernel."""
import numpy as np
import pytest

from crsae_sort.peaks import locally_exclusive


def _probe(n_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """A 2-column probe (32 µm apart, 20 µm pitch) and its 100-µm neighbour mask."""
    loc = np.stack([np.tile([0.0, 32.0], n_channels // 2), np.repeat(np.arange(n_channels // 2) * 20.0, 2)], 1)
    return loc, np.linalg.norm(loc[:, None] - loc[None], axis=-1) <= 100.0


def _spiky(n_samples: int, n_channels: int, n_spikes: int, seed: int) -> np.ndarray:
    """Unit noise plus ``n_spikes`` negative bumps spread over neighbouring channels."""
    rng = np.random.default_rng(seed)
    loc, _ = _probe(n_channels)
    x = rng.standard_normal((n_samples, n_channels)).astype(np.float32)
    for t in rng.integers(50, n_samples - 50, n_spikes):
        c, amp = rng.integers(n_channels), rng.uniform(4, 15)
        w = np.exp(-np.linalg.norm(loc - loc[c], axis=1) ** 2 / (2 * 40.0 ** 2))
        x[t - 3:t + 4] -= (amp * np.hanning(7)[:, None] * w[None]).astype(np.float32)
    return x


def test_one_peak_per_spike_within_radius_and_sweep():
    _, nb = _probe(8)
    x = np.zeros((100, 8), np.float32)
    x[40, 0], x[41, 1] = -10.0, -8.0      # one spike seen on two neighbours: the larger is kept
    x[60, 2], x[60, 3] = -9.0, -9.0       # a tie at the same sample: both kept (SpikeInterface's rule)
    x[80, 4], x[83, 5] = -7.0, -7.0       # a tie 3 samples apart: the earlier is kept
    x[2, 6] = -20.0                       # inside the sweep of the chunk's start: dropped
    s, m = locally_exclusive(x, np.full(8, 5.0, np.float32), 5, nb)
    assert list(zip(s.tolist(), m.tolist())) == [(40, 0), (60, 2), (60, 3), (80, 4)]


def test_far_channels_and_later_peaks_are_independent():
    nb = np.eye(2, dtype=bool)            # two channels that do not see each other
    x = np.zeros((100, 2), np.float32)
    x[40, 0], x[41, 1] = -10.0, -20.0
    x[70, 0], x[78, 0] = -10.0, -20.0     # same channel, outside a sweep of 5: both kept
    s, m = locally_exclusive(x, np.full(2, 5.0, np.float32), 5, nb)
    assert list(zip(s.tolist(), m.tolist())) == [(40, 0), (41, 1), (70, 0), (78, 0)]
    s, _ = locally_exclusive(-x, np.full(2, 5.0, np.float32), 5, nb, peak_sign="pos")
    assert s.tolist() == [40, 41, 70, 78]
    with pytest.raises(ValueError, match="peak_sign"):
        locally_exclusive(x, np.full(2, 5.0, np.float32), 5, nb, peak_sign="up")


@pytest.mark.parametrize("peak_sign", ["neg", "pos", "both"])
@pytest.mark.parametrize("sweep", [3, 15])
def test_same_peaks_as_spikeinterface(peak_sign, sweep):
    pytest.importorskip("numba")
    from spikeinterface.sortingcomponents.peak_detection.locally_exclusive import \
        detect_peaks_numba_locally_exclusive_on_chunk as numba_kernel

    _, nb = _probe(64)
    x = _spiky(6000, 64, 600, seed=3)
    if peak_sign == "pos":
        x = -x
    elif peak_sign == "both":
        x[3000:] *= -1.0
    thr = (4.0 * np.random.default_rng(4).uniform(0.9, 1.1, 64)).astype(np.float32)
    expected = numba_kernel(x, peak_sign, thr, sweep, nb)
    got = locally_exclusive(x, thr, sweep, nb, peak_sign)
    assert len(expected[0]) > 100
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
