"""Opening a recording: SpikeInterface folders, Neo-backed formats, NWB, MATLAB arrays, raw binary.

The format is detected from the path where possible; ``stream`` picks one stream of a
multi-stream file, and an ambiguous choice is an error that lists the streams.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
from importlib import resources
from pathlib import Path

from ..errors import InputError, option
from . import descriptions

logger = logging.getLogger(__name__)

RAW_SUFFIXES = {".raw", ".bin", ".dat", ".int16", ".i16"}
# file suffix -> SpikeInterface's Neo extractor name
NEO_BY_SUFFIX = {".rhd": "intan", ".rhs": "intan", ".nev": "blackrock", ".ns1": "blackrock", ".ns2": "blackrock",
                 ".ns3": "blackrock", ".ns4": "blackrock", ".ns5": "blackrock", ".ns6": "blackrock",
                 ".h5": "mearec", ".plx": "plexon", ".pl2": "plexon2", ".smr": "spike2", ".smrx": "spike2",
                 ".abf": "axon", ".edf": "edf", ".nix": "nix"}
SUPPORTED = ("a SpikeInterface folder (recording.save()), Open Ephys (legacy or binary folder), SpikeGLX folder, "
             "Neuralynx folder, Intan .rhd/.rhs, Blackrock .nsX/.nev, MEArec .h5, NWB .nwb, MATLAB .mat (with "
             "--sampling-frequency), raw binary (with --sampling-frequency --num-channels --dtype), or another file "
             "Neo recognises")


def open_recording(path: str | Path, *, probe: str | None = None, sampling_frequency_hz: float | None = None,
                   num_channels: int | None = None, dtype: str | None = None, gain_to_uv: float | None = None,
                   offset_to_uv: float = 0.0, stream: str | None = None, mat_variable: str = "data"):
    """Open ``path`` as a SpikeInterface recording and make sure it has a probe.

    ``probe`` is a probeinterface file or the name of a shipped probe (``tetrode``, :func:`probe_names`);
    raw binary needs ``sampling_frequency_hz``, ``num_channels`` and ``dtype``; ``gain_to_uv``
    and ``offset_to_uv`` map integer samples to µV (raw binary, .mat, and any input that stores no gain).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    if path.suffix == ".mat":
        recording = read_mat(path, sampling_frequency_hz, variable=mat_variable, gain_to_uv=gain_to_uv,
                             offset_to_uv=offset_to_uv)
    elif num_channels is not None or dtype is not None or (sampling_frequency_hz is not None and path.is_file()):
        if path.is_dir() or None in (sampling_frequency_hz, num_channels, dtype):
            raise InputError("raw binary input needs a file and all of --sampling-frequency, --num-channels "
                             "and --dtype")
        recording = _read_raw(path, sampling_frequency_hz, num_channels, dtype, gain_to_uv, offset_to_uv)
    else:
        recording = _read_known(path, stream)
        if gain_to_uv is not None and not recording.has_scaleable_traces():  # a format that stores no gain
            recording = recording.select_channels(recording.channel_ids)  # a view: the input is untouched
            recording.set_channel_gains(float(gain_to_uv))
            recording.set_channel_offsets(float(offset_to_uv))
    if probe is not None:
        recording = _with_probe(recording, load_probe(probe, recording.get_num_channels()))
    if not recording.has_probe():
        raise InputError(_missing_probe(recording.get_num_channels()))
    logger.info("opened %s: %s", path, recording)
    return recording


def _shipped_probes() -> dict:
    """``{name: file}`` of the probes shipped with crsae-sort (Traversables; the files may sit in a zip)."""
    folder = resources.files("crsae_sort") / "probes"  # package data (pyproject.toml)
    if not folder.is_dir():
        return {}
    return {f.name[:-len(".json")]: f for f in folder.iterdir() if f.name.endswith(".json")}


def probe_names() -> list[str]:
    """Names of the probes shipped with crsae-sort (``tetrode``, ``linear16``, ...)."""
    return sorted(_shipped_probes())


def probes_with(num_channels: int) -> list[str]:
    """The shipped probes with one contact per channel of a ``num_channels``-channel recording."""
    return [name for name, n in _probe_contacts().items() if n == num_channels]


def _probe_contacts() -> dict[str, int]:
    """``{name: number of contacts}`` of the shipped probes, read from their JSON (no probeinterface import)."""
    import json

    return {name: sum(len(p["contact_positions"]) for p in json.loads(f.read_text())["probes"])
            for name, f in sorted(_shipped_probes().items())}


def _missing_probe(n: int) -> str:
    """What to pass when an ``n``-channel recording has no probe: the shipped probes that fit it first."""
    file = option("probe='my_probe.json'", "--probe my_probe.json")
    fitting = probes_with(n)
    if not fitting:
        *most, last = sorted(set(_probe_contacts().values()))
        sizes = f"{', '.join(map(str, most))} or {last}" if most else str(last)
        return (f"recording has no probe attached, and no probe shipped with crsae-sort has its {n} channels (they "
                f"have {sizes} contacts): pass {file}, a probeinterface file with {n} contacts")
    names = " or ".join(option(f"probe='{name}'", f"--probe {name}") for name in fitting)
    which = "probe" if len(fitting) == 1 else "probes"
    check = "" if len(fitting) == 1 else ": check which is yours"
    return (f"recording has no probe attached: pass {names} (the shipped {which} with {n} contacts, one per "
            f"channel{check}) or {file} (any probeinterface file with {n} contacts)")


def load_probe(probe: str, num_channels: int):
    """Read a probeinterface file (a path, or the name of a shipped probe) with device channel indices set."""
    import probeinterface as pi

    candidate = Path(probe)
    with contextlib.ExitStack() as stack:
        if not candidate.is_file():
            shipped = _shipped_probes()
            if probe not in shipped:
                from ..params import with_suggestion

                raise InputError(f"probe {with_suggestion(probe, shipped)} is neither a file nor a probe shipped "
                                 f"with crsae-sort (known: "
                                 f"{', '.join(sorted(shipped)) or 'none: the installation lacks its probe files'})")
            candidate = stack.enter_context(resources.as_file(shipped[probe]))
        try:
            group = pi.read_probeinterface(candidate) if candidate.suffix == ".json" else pi.read_prb(candidate)
        except Exception as exc:  # probeinterface raises several types on malformed files
            raise InputError(f"cannot read probe file {candidate}: {exc}") from exc
    n_contacts = group.get_contact_count()
    if n_contacts != num_channels:
        fits = probes_with(num_channels)
        hint = (f"shipped with {num_channels} contacts: {', '.join(fits)}" if fits else
                f"no shipped probe has {num_channels} contacts: pass a probeinterface file")
        raise InputError(f"probe {candidate.name} has {n_contacts} contacts but the recording has "
                         f"{num_channels} channels; choose a probe that matches ({hint})")
    if len(group.probes) == 1 and group.probes[0].device_channel_indices is None:
        group.probes[0].set_device_channel_indices(list(range(n_contacts)))
    return group


def read_mat(path: Path, sampling_frequency_hz: float | None, *, variable: str = "data",
             gain_to_uv: float | None = None, offset_to_uv: float = 0.0):
    """A MATLAB ``.mat`` array (channels x samples or samples x channels) as a recording.

    The sampling rate must be given: files such as the CBP demo's carry a ``dt`` that is not
    always right (the Quiroga excerpt says 10 kHz but is 24 kHz).
    """
    import numpy as np
    from scipy.io import loadmat
    from spikeinterface.core import NumpyRecording

    if sampling_frequency_hz is None:
        raise InputError(f"{path.name} is a MATLAB file: pass --sampling-frequency (its own dt may be wrong)")
    try:
        content = loadmat(path)
    except Exception as exc:
        raise InputError(f"cannot read {path} as a MATLAB file: {exc}") from exc
    arrays = sorted(k for k, v in content.items() if isinstance(v, np.ndarray) and v.ndim == 2 and v.size > 1000)
    if variable not in content:
        raise InputError(f"{path.name} has no variable {variable!r}; its large arrays are {arrays}: "
                         "pass --mat-variable NAME")
    data = np.asarray(content[variable])
    traces = data.T if data.shape[0] < data.shape[1] else data  # (samples, channels)
    recording = NumpyRecording([np.ascontiguousarray(traces)], sampling_frequency=float(sampling_frequency_hz))
    if gain_to_uv is not None:
        recording.set_channel_gains(float(gain_to_uv))
        recording.set_channel_offsets(float(offset_to_uv))
    return recording


def _with_probe(recording, group):
    """A view of ``recording`` with the probe group attached; the input is untouched."""
    view = recording.select_channels(recording.channel_ids)
    view.set_probegroup(group)  # in place on the view (SpikeInterface >= 0.105)
    return view


def _read_raw(path: Path, sampling_frequency_hz: float, num_channels: int, dtype: str,
              gain_to_uv: float | None, offset_to_uv: float):
    import numpy as np
    from spikeinterface.core import read_binary

    try:
        np_dtype = np.dtype(dtype)
    except TypeError as exc:
        raise InputError(f"--dtype {dtype!r} is not a numpy dtype (try int16, uint16, float32)") from exc
    if num_channels < 1:
        raise InputError(f"--num-channels {num_channels} must be at least 1")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path.name} is empty")
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

    if path.is_dir():
        if any((path / f).exists() for f in ("si_folder.json", "binary.json", "spikeinterface_info.json")):
            descriptions.check_folder(path)
            return sc.load(path)
        name = _neo_name_for_folder(path)
        if name is not None:
            return _read_neo(name, path, stream)
    elif path.suffix == ".nwb":
        return _read_nwb(path, stream)
    elif path.suffix in (".json", ".pkl", ".pickle"):
        return _load_description(path)
    elif path.suffix in RAW_SUFFIXES:
        raise InputError(f"{path.name} looks like raw binary: pass --sampling-frequency, --num-channels, "
                         "--dtype (and --gain-to-uv for integers) and --probe")
    elif path.suffix.lower() in NEO_BY_SUFFIX:
        return _read_neo(NEO_BY_SUFFIX[path.suffix.lower()], path, stream)
    return _read_neo(_neo_name_from_neo(path), path, stream)


def _load_description(path: Path):
    """A recording described by a SpikeInterface ``.json`` (``recording.dump_to_json(...)``; a ``.pkl`` is refused:
    :mod:`crsae_sort.io.descriptions`)."""
    import json

    import spikeinterface.core as sc

    if path.suffix != ".json":
        descriptions.check_file(path)  # a pickle is refused: what it builds cannot be known without running it
    else:
        try:
            described = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is not valid JSON ({exc}); a .json input must be a recording description "
                             "written by SpikeInterface (recording.dump_to_json(...))") from exc
        if not (isinstance(described, dict) and {"class", "module", "kwargs"} <= set(described)):
            raise InputError(f"{path} is JSON but not a SpikeInterface recording description (it lacks class, "
                             "module and kwargs); pass a file written by recording.dump_to_json(...), the folder "
                             "of recording.save(...), or the raw data itself")
        descriptions.check_description(described, path)  # it must build SpikeInterface objects only
    try:
        return sc.load(path)
    except Exception as exc:  # the described files moved, an extractor is missing, ...
        raise InputError(f"SpikeInterface cannot open the recording described in {path}: {exc}") from exc


def _neo_name_for_folder(path: Path) -> str | None:
    if next(path.rglob("structure.oebin"), None) is not None:
        return "openephysbinary"
    if next(path.glob("*.continuous"), None) is not None:
        return "openephyslegacy"
    if next(path.rglob("*.meta"), None) is not None:
        return "spikeglx"
    if next(path.glob("*.ncs"), None) is not None or next(path.glob("*.nse"), None) is not None:
        return "neuralynx"
    return None


def _neo_name_from_neo(path: Path) -> str:
    import neo.rawio
    from spikeinterface.extractors.neoextractors import neo_recording_class_dict

    rawio = neo.rawio.get_rawio(str(path))
    if rawio is None:
        raise InputError(f"format of {path} not recognised; crsae-sort reads {SUPPORTED}")
    rawio_name = rawio if isinstance(rawio, str) else rawio.__name__
    for name, extractor in neo_recording_class_dict.items():
        if getattr(extractor, "NeoRawIOClass", None) == rawio_name:
            return name
    raise InputError(f"Neo reads {path} with {rawio_name}, which SpikeInterface does not wrap as a recording")


def _read_neo(name: str, path: Path, stream: str | None):
    """Open ``path`` with SpikeInterface's Neo extractor ``name``, choosing the stream."""
    from spikeinterface.extractors.neoextractors.neo_utils import get_neo_extractor, get_neo_streams

    extractor = get_neo_extractor(name)
    arg = "folder_path" if "folder_path" in inspect.signature(extractor.__init__).parameters else "file_path"
    try:
        names, ids = get_neo_streams(name, str(path))
    except ImportError as exc:
        raise InputError(f"reading {path.name} ({name}) needs an extra package: {exc}; pip install it") from exc
    except Exception as exc:
        raise InputError(f"{name} reader cannot open {path}: {exc}") from exc
    if stream is None and len(names) > 1:
        raise InputError(f"{path.name} holds {len(names)} streams: {', '.join(names)}; choose one with "
                         f"--stream NAME")
    kwargs = {arg: str(path)}
    if stream is not None:
        if stream in names:
            kwargs["stream_name"] = stream
        elif stream in ids:
            kwargs["stream_id"] = stream
        else:
            raise InputError(f"stream {stream!r} is not in {path.name}; its streams are {', '.join(names)}")
    elif names:
        kwargs["stream_name"] = names[0]
    recording = extractor(**kwargs)
    return recording[0] if isinstance(recording, tuple) else recording


def _read_nwb(path: Path, stream: str | None):
    import spikeinterface.extractors as se

    try:
        return se.read_nwb_recording(path, electrical_series_path=stream)
    except ValueError as exc:
        text = str(exc)
        if "electrical" in text.lower() and ("multiple" in text.lower() or "available" in text.lower()):
            raise InputError(f"{path.name}: {text.split(':', 1)[-1].strip()} Choose one with --stream "
                             "acquisition/NAME") from exc
        raise InputError(f"cannot read {path.name} as NWB: {exc}") from exc
