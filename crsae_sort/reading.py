"""Opening a recording: SpikeInterface folders, Neo-backed formats, raw binary; attaching a probe."""
from __future__ import annotations

import logging
from pathlib import Path

from .errors import InputError

logger = logging.getLogger(__name__)

PROBES_DIR = Path(__file__).resolve().parent.parent / "probes"
RAW_SUFFIXES = {".raw", ".bin", ".dat", ".int16", ".i16"}


def open_recording(path: str | Path, *, probe: str | None = None, sampling_frequency_hz: float | None = None,
                   num_channels: int | None = None, dtype: str | None = None, gain_to_uv: float | None = None,
                   offset_to_uv: float = 0.0, stream: str | None = None):
    """Open ``path`` as a SpikeInterface recording and make sure it has a probe.

    * a folder written by SpikeInterface (``recording.save()``) or any SpikeInterface JSON/pickle,
    * an Open Ephys folder (legacy ``.continuous`` or binary ``structure.oebin``),
    * an NWB file (``.nwb``),
    * raw interleaved binary with ``sampling_frequency_hz``, ``num_channels`` and ``dtype``
      (``gain_to_uv`` and ``offset_to_uv`` map integer samples to µV),
    * any other file or folder that Neo recognises (``neo.rawio.get_rawio``).
    ``probe`` is a probeinterface file or the name of a file in ``probes/`` (``tetrode``).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    raw_args = (sampling_frequency_hz, num_channels, dtype)
    if any(a is not None for a in raw_args):
        if path.is_dir() or None in raw_args:
            raise InputError("raw binary input needs a file and all of --sampling-frequency, --num-channels "
                             "and --dtype")
        recording = _read_raw(path, sampling_frequency_hz, num_channels, dtype, gain_to_uv, offset_to_uv)
    else:
        recording = _read_known(path, stream)
    if probe is not None:
        recording = _with_probe(recording, load_probe(probe, recording.get_num_channels()))
    if not recording.has_probe():
        raise InputError("recording has no probe attached: pass --probe tetrode (a name in probes/) or "
                         "--probe my_probe.json (any probeinterface file)")
    return recording


def load_probe(probe: str, num_channels: int):
    """Read a probeinterface file (path or name in ``probes/``) with device channel indices set."""
    import probeinterface as pi

    candidate = Path(probe)
    if not candidate.exists():
        named = sorted(PROBES_DIR.glob("*.json"))
        match = [p for p in named if p.stem == probe]
        if not match:
            names = ", ".join(p.stem for p in named) or "none"
            raise InputError(f"probe {probe!r} is neither a file nor a probe in probes/ (known: {names})")
        candidate = match[0]
    group = pi.read_probeinterface(candidate) if candidate.suffix == ".json" else pi.read_prb(candidate)
    probe_obj = group.probes[0] if len(group.probes) == 1 else group
    n_contacts = group.get_contact_count()
    if n_contacts != num_channels:
        raise InputError(f"probe {candidate.name} has {n_contacts} contacts but the recording has "
                         f"{num_channels} channels; choose a probe that matches")
    if len(group.probes) == 1 and probe_obj.device_channel_indices is None:
        probe_obj.set_device_channel_indices(list(range(n_contacts)))
    return probe_obj


def _with_probe(recording, probe):
    """A view of ``recording`` with ``probe`` (a Probe or ProbeGroup) attached; the input is untouched."""
    import probeinterface as pi

    group = probe if isinstance(probe, pi.ProbeGroup) else _as_group(probe)
    view = recording.select_channels(recording.channel_ids)
    view.set_probegroup(group, in_place=True)
    return view


def _as_group(probe):
    import probeinterface as pi

    group = pi.ProbeGroup()
    group.add_probe(probe)
    return group


def _read_raw(path: Path, sampling_frequency_hz: float, num_channels: int, dtype: str,
              gain_to_uv: float | None, offset_to_uv: float):
    import numpy as np
    from spikeinterface.core import read_binary

    try:
        np_dtype = np.dtype(dtype)
    except TypeError as exc:
        raise InputError(f"--dtype {dtype!r} is not a numpy dtype (try int16, uint16, float32)") from exc
    size = path.stat().st_size
    if size % (np_dtype.itemsize * int(num_channels)):
        raise InputError(f"{path.name} has {size} bytes, not a whole number of {num_channels}-channel "
                         f"{np_dtype} samples; check --num-channels and --dtype")
    kwargs = {}
    if gain_to_uv is not None:
        kwargs = dict(gain_to_uV=float(gain_to_uv), offset_to_uV=float(offset_to_uv))
    return read_binary(path, sampling_frequency=float(sampling_frequency_hz), dtype=np_dtype.str,
                       num_channels=int(num_channels), **kwargs)


def _read_known(path: Path, stream: str | None):
    import spikeinterface.core as sc
    import spikeinterface.extractors as se

    if path.is_dir():
        if any((path / f).exists() for f in ("si_folder.json", "binary.json", "spikeinterface_info.json")):
            return sc.load(path)
        if list(path.glob("*.continuous")) or list(path.rglob("structure.oebin")):
            return se.read_openephys(path, stream_name=stream) if stream else se.read_openephys(path)
    elif path.suffix == ".nwb":
        return se.read_nwb_recording(path, electrical_series_path=stream) if stream else se.read_nwb_recording(path)
    elif path.suffix in (".json", ".pkl", ".pickle"):
        return sc.load(path)
    elif path.suffix in RAW_SUFFIXES:
        raise InputError(f"{path.name} looks like raw binary: pass --sampling-frequency, --num-channels, "
                         "--dtype and --probe")
    return _read_with_neo(path, stream)


def _read_with_neo(path: Path, stream: str | None):
    import inspect

    import neo.rawio
    import spikeinterface.extractors as se

    rawio = neo.rawio.get_rawio(str(path))
    if rawio is None:
        raise InputError(f"format of {path} not recognised: give a SpikeInterface folder, an Open Ephys folder, "
                         "an .nwb file, raw binary (with --sampling-frequency --num-channels --dtype), or a "
                         "file Neo reads")
    rawio_name = rawio if isinstance(rawio, str) else rawio.__name__
    for extractor in se.recording_extractor_full_dict.values():
        if getattr(extractor, "NeoRawIOClass", None) == rawio_name:
            arg = "folder_path" if "folder_path" in inspect.signature(extractor.__init__).parameters else "file_path"
            kwargs = {arg: str(path)}
            if stream:
                kwargs["stream_name"] = stream
            return extractor(**kwargs)
    raise InputError(f"Neo reads {path} with {rawio_name}, which SpikeInterface does not wrap as a recording")
