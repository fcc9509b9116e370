"""Phy folder and NWB file: written from our learned templates, read back by other tools."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

FAST = dict(max_epochs=1, n_windows=32, batch_size=16, n_iterations=10, init_duration_s=6.0, device="cpu")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import spikeinterface as si
    from spikeinterface.core import generate_ground_truth_recording

    from crsae_sort import sort

    base = tmp_path_factory.mktemp("outputs")
    rec, _ = generate_ground_truth_recording(num_channels=4, durations=[6.0], seed=1)
    rec.save(folder=base / "rec", n_jobs=1, progress_bar=False)
    rec = si.load(base / "rec")
    result = sort(rec, base / "out", FAST, phy=True, nwb=True, progress=False)
    return rec, result, base


def test_phy_folder_holds_our_templates_and_spikes(exported):
    from spikeinterface.extractors import read_phy

    from crsae_sort.io.results import aligned_templates, spike_peak_samples

    rec, result, base = exported
    phy = base / "out" / "phy"
    # the input is a SpikeInterface binary folder: Phy reads its file in place, no copy
    assert (phy / "params.py").is_file() and not (phy / "recording.dat").exists()
    params = (phy / "params.py").read_text()
    assert f"dat_path = r'{(base / 'rec' / 'traces_cached_seg0.raw').resolve()}'" in params
    assert "n_channels_dat = 4" in params and "dtype = 'float32'" in params
    np.testing.assert_array_equal(np.load(phy / "channel_map.npy"), [0, 1, 2, 3])
    back = read_phy(phy)  # restores our unit ids from cluster_si_unit_ids.tsv
    assert sorted(back.unit_ids) == sorted(result.sorting.unit_ids)
    for unit in result.sorting.unit_ids:
        np.testing.assert_array_equal(back.get_unit_spike_train(unit), result.sorting.get_unit_spike_train(unit))
    expected, nbefore = aligned_templates(result.templates_uv, spike_peak_samples(result))
    np.testing.assert_allclose(np.load(phy / "templates.npy"), expected, rtol=1e-5, atol=1e-4)
    assert np.load(phy / "amplitudes.npy").shape[0] == len(result.spikes)


def test_quality_labels_reach_phy_summary_and_nwb(exported):
    """The sorting property ``quality`` is what cluster_group.tsv, cluster_KSLabel.tsv, summary.json and the NWB
    units table hold, unit by unit."""
    import csv

    from pynwb import NWBHDF5IO

    from crsae_sort.summary import Summary

    rec, result, base = exported
    labels = list(result.sorting.get_property("quality"))
    assert labels and set(labels) <= {"good", "mua", "noise"}
    for name, column in (("cluster_group.tsv", "group"), ("cluster_KSLabel.tsv", "KSLabel")):
        with open(base / "out" / "phy" / name) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        assert [int(r["cluster_id"]) for r in rows] == list(range(len(labels)))
        assert [r[column] for r in rows] == labels
    summary = Summary.read(base / "out")
    assert [u.quality for u in summary.units] == labels
    assert all(set(u.quality_metrics) >= {"snr", "isi_violations_ratio"} for u in summary.units)
    with NWBHDF5IO(str(base / "out" / "units.nwb"), "r") as io:
        assert list(io.read().units["quality"][:]) == labels
    import spikeinterface as si

    assert list(si.load(base / "out" / "sorting").get_property("quality")) == labels


def test_phy_copies_the_traces_when_no_binary_file_holds_them(exported, tmp_path):
    """An in-memory recording has no file Phy could read: it is copied into recording.dat, as before."""
    from crsae_sort.io.phy_nwb import binary_source, export_phy

    rec, result, _ = exported
    assert binary_source(rec) is not None
    assert binary_source(rec.select_channels(rec.channel_ids[::-1])).channels.tolist() == [3, 2, 1, 0]
    memory = rec.to_numpy_recording() if hasattr(rec, "to_numpy_recording") else None
    if memory is None:
        from spikeinterface.core import NumpyRecording

        memory = NumpyRecording([rec.get_traces()], rec.get_sampling_frequency(), channel_ids=rec.channel_ids)
        memory.set_probegroup(rec.get_probegroup())
    assert binary_source(memory) is None
    phy = export_phy(result, memory, tmp_path / "phy")
    assert (phy / "recording.dat").is_file() and "dat_path = r'recording.dat'" in (phy / "params.py").read_text()


def test_aligned_template_peak_sits_where_the_spike_times_point(exported):
    """Average the band-passed data at the reported spike times: its peak lands on ``nbefore``."""
    from spikeinterface.preprocessing import bandpass_filter

    from crsae_sort.io.results import aligned_templates, spike_peak_samples

    rec, result, _ = exported
    templates, nbefore = aligned_templates(result.templates_uv, spike_peak_samples(result))
    traces = bandpass_filter(rec, freq_min=300, freq_max=6000).get_traces(return_in_uV=True)
    n = templates.shape[1]
    checked = 0
    for i, unit in enumerate(result.sorting.unit_ids):
        times = result.sorting.get_unit_spike_train(unit)
        times = times[(times >= nbefore) & (times < len(traces) - n)]
        if len(times) < 30:
            continue
        mean = np.mean([traces[t - nbefore: t - nbefore + n] for t in times], axis=0)
        chan = np.abs(templates[i]).max(axis=0).argmax()
        assert abs(int(np.abs(mean[:, chan]).argmax()) - nbefore) <= 3
        checked += 1
    assert checked >= 2


def test_phylib_reads_the_phy_folder(exported):
    pytest.importorskip("phylib")
    from phylib.io.model import load_model

    _, result, base = exported
    model = load_model(base / "out" / "phy" / "params.py")
    try:
        assert model.n_templates == len(result.sorting.unit_ids)
        assert model.n_spikes == len(result.spikes)
        assert model.n_channels == 4
    finally:
        model.close()


def test_nwb_units_table_reads_back(exported):
    from pynwb import NWBHDF5IO

    rec, result, base = exported
    fs = rec.get_sampling_frequency()
    with NWBHDF5IO(str(base / "out" / "units.nwb"), "r") as io:
        nwb = io.read()
        units = nwb.units
        assert len(units) == len(result.sorting.unit_ids)
        assert len(nwb.electrodes) == 4
        for i, unit in enumerate(result.sorting.unit_ids):
            np.testing.assert_allclose(units.get_unit_spike_times(i), result.sorting.get_unit_spike_train(unit) / fs)
            assert units["crsae_unit_id"][i] == unit
            np.testing.assert_allclose(units["waveform_mean"][i], result.templates_uv[i] * 1e-6, rtol=1e-6)
            assert list(units["electrodes"][i].index) == [0, 1, 2, 3]
        assert units.waveform_rate == fs and units.waveform_unit == "volts"
        provenance = json.loads(nwb.scratch["crsae_sort_provenance"].data)
        assert provenance["params"] == result.params.to_dict()
        assert provenance["versions"]["spikeinterface"] and provenance["crsae_sort"]
        assert nwb.source_script.startswith("crsae-sort")


def test_cli_phy_and_nwb_flags(exported, tmp_path):
    from crsae_sort.cli import main

    rec, result, base = exported
    out = tmp_path / "cli"
    res = CliRunner().invoke(main, ["sort", str(base / "rec"), "-o", str(out), "--model",
                                    str(base / "out" / "model.pt"), "--phy", "--nwb"])
    assert res.exit_code == 0, res.output
    assert (out / "phy" / "params.py").is_file() and (out / "units.nwb").is_file()


def test_phy_without_an_output_folder_is_an_input_error(exported):
    from crsae_sort import InputError, sort

    rec = exported[0]
    with pytest.raises(InputError, match="need an output folder"):
        sort(rec, None, FAST, phy=True)


def test_phy_on_two_segments_fails_before_sorting(exported, tmp_path):
    from spikeinterface import append_recordings

    from crsae_sort import InputError, sort

    rec = exported[0]
    with pytest.raises(InputError, match="one-segment"):
        sort(append_recordings([rec, rec]), tmp_path / "o", FAST, phy=True)
    assert not (tmp_path / "o").exists()


def test_templates_zarr_is_spikeinterface_templates_with_sparsity(exported):
    """``templates.zarr`` reads back as SpikeInterface ``Templates``: the same aligned µV templates, sparse by radius."""
    from spikeinterface.core import Templates

    from crsae_sort.io.results import aligned_templates, spike_peak_samples

    rec, result, base = exported
    back = Templates.from_zarr(base / "out" / "templates.zarr")
    assert list(back.unit_ids) == list(result.sorting.unit_ids) and back.is_in_uV
    expected, nbefore = aligned_templates(result.templates_uv, spike_peak_samples(result))
    assert back.nbefore == nbefore
    np.testing.assert_allclose(back.get_dense_templates(), expected * back.sparsity_mask[:, None, :], atol=1e-5)
    # a tetrode lies within radius_um (100 µm) of every contact: every channel is kept
    assert back.sparsity_mask.all() and back.probe is not None


def test_no_units_means_no_phy_folder_and_no_nwb_file(exported, tmp_path):
    """remove_labels can remove every unit: Phy and NWB are skipped with a warning instead of failing the sort."""
    import dataclasses

    from crsae_sort.io.phy_nwb import export_nwb, export_phy

    rec, result, _ = exported
    empty = dataclasses.replace(result, sorting=result.sorting.select_units([]))
    assert export_phy(empty, rec, tmp_path / "phy") is None and not (tmp_path / "phy").exists()
    assert export_nwb(empty, rec, tmp_path / "units.nwb") is None and not (tmp_path / "units.nwb").exists()


def test_a_raw_binary_behind_a_probe_view_is_read_in_place(tmp_path):
    """A raw .dat with a header, channels selected and reordered by a probe: Phy's params.py names the file,
    its channel count, dtype and header, and channel_map.npy the channels in it."""
    from spikeinterface.core import read_binary

    from crsae_sort.io.phy_nwb import _point_at_binary, binary_source

    path = tmp_path / "raw.dat"
    path.write_bytes(b"\0" * 64 + np.arange(6000, dtype="<i2").tobytes())
    rec = read_binary(path, sampling_frequency=1000.0, dtype="int16", num_channels=6, file_offset=64)
    view = rec.select_channels(rec.channel_ids[[4, 1, 2]])
    source = binary_source(view)
    assert (source.path, source.n_channels, source.dtype, source.offset) == (path.resolve(), 6, "int16", 64)
    assert source.channels.tolist() == [4, 1, 2]
    _point_at_binary(tmp_path, source, 1000.0, False)
    params = {}
    exec((tmp_path / "params.py").read_text(), params)  # Phy reads params.py as Python
    assert (params["dat_path"], params["n_channels_dat"], params["offset"]) == (str(path.resolve()), 6, 64)
    data = np.memmap(params["dat_path"], dtype=params["dtype"], offset=params["offset"]).reshape(-1, 6)
    np.testing.assert_array_equal(data[:, np.load(tmp_path / "channel_map.npy")], view.get_traces())
