"""Hybrid ground truth (crsae_sort.bench.hybrid): units injected into real recordings at a chosen SNR."""
import numpy as np
import pytest

from conftest import SHARED_DATA
from crsae_sort.bench.hybrid import HYBRID_CASES, make_hybrid, measured_snrs, source_path


@pytest.mark.parametrize("case", ["hybrid_locust_b", "hybrid_openephys_a"])
def test_injected_units_land_on_their_target_snr(case):
    spec = HYBRID_CASES[case]
    if not source_path(spec.source, SHARED_DATA).exists():
        pytest.skip(f"{source_path(spec.source, SHARED_DATA)} not present")
    built = make_hybrid(case, SHARED_DATA)
    assert len(built.gt_sorting.unit_ids) == spec.num_units
    assert sorted(built.target_snrs.values()) == pytest.approx(sorted(spec.target_snrs))
    for unit, target in built.target_snrs.items():
        assert built.snrs[unit] == pytest.approx(target, rel=0.15), unit
    # the SNR is measured on the recording as saved, not taken from the scaling: measure it again
    assert measured_snrs(built.recording, built.gt_sorting) == pytest.approx(built.snrs, rel=1e-6)
    # the real recording's samples are kept: without the injected spikes' windows, nothing changed
    from crsae_sort.bench.hybrid import open_source

    real = open_source(spec.source, SHARED_DATA).get_traces(end_frame=20000).astype(np.int32)
    hybrid = built.recording.get_traces(end_frame=20000).astype(np.int32)
    assert np.median(np.abs(hybrid - real)) == 0 and np.abs(hybrid - real).max() > 0


def test_absent_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="shared data"):
        make_hybrid("hybrid_locust_a", tmp_path)
    with pytest.raises(ValueError, match="unknown hybrid case"):
        make_hybrid("hybrid_nowhere", tmp_path)
