"""Plain text of the report: the recording in one line, numpy scalars as plain values."""
from __future__ import annotations

import re


def describe_recording(recording) -> str:
    """One line: the format and file the traces come from, channels, rate, duration, segments and sample type."""
    fs = recording.get_sampling_frequency()
    n_segments = recording.get_num_segments()
    duration_s = sum(recording.get_num_samples(s) for s in range(n_segments)) / fs
    return (f"{_source(recording)}: {recording.get_num_channels()} channels at {fs:g} Hz, "
            f"{duration_s:.1f} s in {n_segments} segment{'s' if n_segments > 1 else ''}, {recording.get_dtype()}")


_PATH_KEYS = ("folder_path", "file_path", "file_paths", "folder", "path")


def _source(recording) -> str:
    """The extractor under any views (channel selections, probe attached): its format and its file or folder."""
    rec = recording
    while isinstance(getattr(rec, "_kwargs", None), dict) and hasattr(rec._kwargs.get("recording"), "get_traces"):
        rec = rec._kwargs["recording"]
    name = type(rec).__name__
    fmt = re.sub(r"(Recording)?(Extractor)?$", "", name) or name
    places = [getattr(rec, "_kwargs", None) or {}, getattr(rec, "_bin_kwargs", None) or {}]
    path = next((kw[k] for kw in places for k in _PATH_KEYS if isinstance(kw, dict) and kw.get(k)), None)
    if isinstance(path, (list, tuple)):
        path = path[0] if len(path) == 1 else f"{len(path)} files from {path[0]}"
    return f"{fmt} ({path})" if path else f"{fmt} (in memory)"


def plain_ids(text: str) -> str:
    """numpy scalars in a message as plain values: ``[np.int64(0), np.str_('a')]`` -> ``[0, 'a']``."""
    return re.sub(r"np\.[a-z_]+[0-9]*_?\((.*?)\)", r"\1", text)
