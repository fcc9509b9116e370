"""Optional outputs for other tools: a Phy folder and an NWB file, from a finished sort.

Both use *our learned templates* (``templates.npy``, µV), not templates re-averaged from the data.
Called at the end of :func:`crsae_sort.sort` (``phy=True``, ``nwb=True``; ``--phy``, ``--nwb``).
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .results import aligned_templates, spike_peak_samples

logger = logging.getLogger(__name__)

PHY_FOLDER = "phy"
NWB_FILE = "units.nwb"


def check_outputs_possible(recording, output_folder, *, phy: bool, nwb: bool) -> None:
    """Before any heavy work: can the requested outputs be written at all?"""
    if output_folder is None:
        raise InputError("phy=True and nwb=True need an output folder")
    if phy and recording.get_num_segments() != 1:
        raise InputError(f"Phy needs a one-segment recording, this one has {recording.get_num_segments()}; "
                         "sort spikeinterface.concatenate_recordings([...]) or leave out --phy")
    if nwb:
        import importlib.util

        if importlib.util.find_spec("pynwb") is None:
            raise InputError("--nwb needs pynwb: pip install 'crsae-sort[nwb]' (or pip install pynwb)")


def export_phy(result, recording, folder: Path, *, copy_binary: bool = False) -> Path | None:
    """Phy template-gui folder from ``result`` via SpikeInterface's ``export_to_phy``.

    The analyzer is given our learned templates (aligned to the spike times), their similarity and each
    spike's amplitude from the model, so Phy's templates, amplitudes and similarity come from the model, no
    pass over the traces is made and SpikeInterface's similarity is not compiled; PC features are not computed (Phy's feature view
    stays empty; its waveform, trace, amplitude and correlogram views do not need them). When the
    recording is one binary file Phy can read (a SpikeInterface binary folder, a raw ``.dat``/``.bin``, behind
    any channel selection), ``params.py`` points at that file (absolute path) and ``channel_map.npy`` at its
    channels instead of copying it into ``recording.dat``; the traces are copied when there is no such file, or
    when ``copy_binary`` is true. ``cluster_group.tsv`` (Phy's groups) and ``cluster_KSLabel.tsv`` hold the
    quality labels (:mod:`crsae_sort.curate`). Read back with ``spikeinterface.extractors.read_phy`` before
    returning.
    """
    from spikeinterface.exporters import export_to_phy

    from .analyzer import (attach_extension, attach_template_similarity, attach_templates, in_spike_order,
                           memory_analyzer)

    check_outputs_possible(recording, folder, phy=True, nwb=False)
    folder = Path(folder)
    if len(result.sorting.unit_ids) == 0:  # Phy cannot open a folder without clusters
        logger.warning("Phy folder not written: no units (none found, or every unit removed by remove_labels=%s)",
                       result.params.curation.remove_labels)
        return None
    templates, nbefore = aligned_templates(result.templates_uv, spike_peak_samples(result))
    sorting = result.sorting
    source = None if copy_binary else binary_source(recording)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not serializable.*")
        analyzer = memory_analyzer(sorting, recording, np.abs(templates).max(axis=1).argmax(axis=1))
        attach_templates(analyzer, templates, nbefore)
        attach_template_similarity(analyzer, templates)
        amplitudes = in_spike_order(analyzer, result.spikes)["amplitude_uv"].astype(np.float32)
        attach_extension(analyzer, "spike_amplitudes", {"amplitudes": amplitudes})
        export_to_phy(analyzer, folder, compute_pc_features=False, compute_amplitudes=True, copy_binary=source is None,
                      remove_if_exists=True, use_relative_path=source is None, verbose=False, n_jobs=1,
                      progress_bar=False)
    if source is not None:
        _point_at_binary(folder, source, recording.get_sampling_frequency(), recording.is_filtered())
    _write_labels(folder, result)
    _check_phy(folder, sorting)
    logger.info("Phy folder written: %d units, %s (open with `phy template-gui %s/params.py`)",
                len(sorting.unit_ids), f"raw data read from {source.path}" if source else "raw data copied",
                folder.name)
    return folder


@dataclass(frozen=True)
class BinarySource:
    """A binary file that holds the recording's traces, as Phy's ``params.py`` describes one."""
    path: Path
    n_channels: int            # channels interleaved in the file
    dtype: str
    offset: int                # bytes before the first sample
    channels: np.ndarray       # the recording's channels: their indices in the file


def binary_source(recording) -> BinarySource | None:
    """The one binary file (time-major, one segment) whose samples ``recording`` returns unchanged, behind
    any channel selections (``set_probe``, dead channels removed); None when the traces come from elsewhere."""
    from spikeinterface.core import BinaryRecordingExtractor
    from spikeinterface.core.channelslice import ChannelSliceRecording

    rec, channels = recording, np.arange(recording.get_num_channels())
    while isinstance(rec, ChannelSliceRecording):
        channels = np.asarray(rec._parent_channel_indices)[channels]
        rec = rec._parent
    if not isinstance(rec, BinaryRecordingExtractor) or rec.get_num_segments() != 1:
        return None
    kwargs = getattr(rec, "_bin_kwargs", None) or rec._kwargs
    paths = kwargs.get("file_paths") or []
    if len(paths) != 1 or kwargs.get("time_axis", 0) != 0 or not Path(paths[0]).is_file():
        return None
    return BinarySource(Path(paths[0]).resolve(), int(kwargs["num_channels"]), np.dtype(kwargs["dtype"]).name,
                        int(kwargs.get("file_offset", 0) or 0), channels.astype(np.int32))


def _point_at_binary(folder: Path, source: BinarySource, sampling_frequency_hz: float, filtered: bool) -> None:
    """Phy reads ``source`` in place: ``params.py`` names the file, ``channel_map.npy`` the channels in it."""
    (folder / "params.py").write_text(
        f"dat_path = r'{source.path}'\nn_channels_dat = {source.n_channels}\ndtype = '{source.dtype}'\n"
        f"offset = {source.offset}\nsample_rate = {sampling_frequency_hz}\nhp_filtered = {bool(filtered)}\n")
    np.save(folder / "channel_map.npy", source.channels)


def _write_labels(folder: Path, result) -> None:
    """Phy's ``cluster_group.tsv`` and Kilosort's ``cluster_KSLabel.tsv`` from the quality labels (Phy's
    cluster ids are the sorting's unit indices); unlabelled units stay ``unsorted``."""
    by_id = {u.unit_id: u for u in result.summary.units}
    labels = [by_id[int(u)].quality or "unsorted" for u in result.sorting.unit_ids]
    for name, column in (("cluster_group.tsv", "group"), ("cluster_KSLabel.tsv", "KSLabel")):
        rows = "".join(f"{i}\t{label}\n" for i, label in enumerate(labels))
        (folder / name).write_text(f"cluster_id\t{column}\n{rows}")


def _check_phy(folder: Path, sorting) -> None:
    """Read the Phy folder back with SpikeInterface (and phylib when installed); compare spike counts."""
    from spikeinterface.extractors import read_phy

    back = read_phy(folder)
    counts = sorted(len(back.get_unit_spike_train(u)) for u in back.unit_ids)
    expected = sorted(len(sorting.get_unit_spike_train(u)) for u in sorting.unit_ids if
                      len(sorting.get_unit_spike_train(u)))
    if counts != expected:
        raise RuntimeError(f"Phy folder {folder} reads back with spike counts {counts}, expected {expected}")
    try:
        from phylib.io.model import load_model
    except ImportError:
        return
    model = load_model(folder / "params.py")
    try:
        if model.n_templates != len(expected) or model.n_spikes != sum(expected):
            raise RuntimeError(f"phylib reads {folder} as {model.n_templates} templates and {model.n_spikes} "
                               f"spikes, expected {len(expected)} and {sum(expected)}")
    finally:
        model.close()


def export_nwb(result, recording, path: Path, *, session_description: str = "crsae-sort spike sorting") -> Path | None:
    """NWB file with the electrodes and a units table: spike times (s), waveform means (µV,
    ``(units, samples, channels)``), electrodes, spike counts and λ; the parameters and versions are
    stored as provenance (``scratch/crsae_sort_provenance``, JSON). Read back with pynwb.
    Waveforms are in volts, as NWB requires (``templates.npy`` holds the same in µV)."""
    from datetime import datetime, timezone
    from uuid import uuid4

    try:
        from pynwb import NWBHDF5IO, NWBFile
        from pynwb.core import ScratchData
        from pynwb.misc import Units
    except ImportError as exc:
        raise InputError("--nwb needs pynwb: pip install 'crsae-sort[nwb]' (or pip install pynwb)") from exc
    from ..runlog import package_version, versions

    if len(result.sorting.unit_ids) == 0:  # pynwb cannot type the columns of an empty units table
        logger.warning("NWB file not written: no units (none found, or every unit removed by remove_labels=%s)",
                       result.params.curation.remove_labels)
        return None
    path = Path(path)
    fs = recording.get_sampling_frequency()
    nwb = NWBFile(session_description=session_description, identifier=str(uuid4()),
                  session_start_time=datetime.now(timezone.utc).astimezone(),
                  source_script=f"crsae-sort {package_version()}", source_script_file_name="crsae_sort")
    device = nwb.create_device(name="probe", description="recording probe")
    locations = _channel_locations(recording)
    groups = {}
    for g in sorted(set(_channel_groups(recording))):
        groups[g] = nwb.create_electrode_group(name=f"group{g}", description=f"channel group {g}",
                                               location="unknown", device=device)
    nwb.add_electrode_column(name="channel_id", description="SpikeInterface channel id")
    for ch, (x, y), g in zip(recording.channel_ids, locations, _channel_groups(recording)):
        nwb.add_electrode(group=groups[g], location="unknown", rel_x=float(x), rel_y=float(y),
                          channel_id=str(ch))
    region = list(range(recording.get_num_channels()))
    nwb.units = Units(name="units", description=f"units sorted by crsae-sort {package_version()}; waveform_mean is the "
                      "learned template (band-passed, volts)", waveform_rate=fs, resolution=1.0 / fs,
                      electrode_table=nwb.electrodes)
    nwb.add_unit_column(name="crsae_unit_id", description="crsae-sort unit id (template index)")
    nwb.add_unit_column(name="lambda_", description="learned sparsity weight λ of the template")
    nwb.add_unit_column(name="quality", description="quality label: good, mua or noise (SpikeInterface's metrics, "
                        "Bombcell's rules; crsae_sort.curate); empty when not labelled")
    by_id = {u.unit_id: u for u in result.summary.units}
    offsets = _segment_offsets_s(recording)
    for i, unit_id in enumerate(result.sorting.unit_ids):
        times = np.concatenate([result.sorting.get_unit_spike_train(unit_id, segment_index=s) / fs + offsets[s]
                                for s in range(recording.get_num_segments())])
        nwb.add_unit(spike_times=np.sort(times), waveform_mean=result.templates_uv[i].astype(np.float64) * 1e-6,
                     electrodes=region, crsae_unit_id=int(unit_id), lambda_=float(by_id[int(unit_id)].lambda_),
                     quality=by_id[int(unit_id)].quality or "")
    provenance = dict(crsae_sort=package_version(), versions=versions(), params=result.params.to_dict(),
                      summary={k: v for k, v in result.summary.to_dict().items() if k != "units"})
    nwb.add_scratch(ScratchData(name="crsae_sort_provenance", data=json.dumps(provenance, default=str),
                                description="crsae-sort parameters, versions and run summary (JSON)"))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    _check_nwb(path, result)
    logger.info("NWB file %s written: %d units", path.name, len(result.sorting.unit_ids))
    return path


def _check_nwb(path: Path, result) -> None:
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "r") as io:
        units = io.read().units
        n = len(units)
        counts = [len(units.get_unit_spike_times(i)) for i in range(n)]
    sorting = result.sorting
    expected = [sum(len(sorting.get_unit_spike_train(u, segment_index=s)) for s in range(sorting.get_num_segments()))
                for u in sorting.unit_ids]
    if counts != expected:
        raise RuntimeError(f"NWB file {path} reads back with {n} units / spike counts {counts}; expected "
                           f"{len(result.sorting.unit_ids)} / {expected}")


def _channel_locations(recording) -> np.ndarray:
    if recording.has_probe() or "location" in recording.get_property_keys():
        locs = np.asarray(recording.get_channel_locations(), dtype=np.float64)
        return locs[:, :2] if locs.shape[1] >= 2 else np.c_[locs, np.zeros(len(locs))]
    return np.zeros((recording.get_num_channels(), 2))


def _channel_groups(recording) -> list[int]:
    groups = recording.get_channel_groups() if "group" in recording.get_property_keys() else None
    return [int(g) for g in groups] if groups is not None else [0] * recording.get_num_channels()


def _segment_offsets_s(recording) -> list[float]:
    """Start time of each segment in one NWB timeline: each segment's own start if it has one,
    else segments laid end to end."""
    fs = recording.get_sampling_frequency()
    offsets, end = [], 0.0
    for s in range(recording.get_num_segments()):
        t0 = recording.get_start_time(segment_index=s) if hasattr(recording, "get_start_time") else 0.0
        start = max(float(t0), end)
        offsets.append(start)
        end = start + recording.get_num_samples(s) / fs
    return offsets
