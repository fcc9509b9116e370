"""crsae-sort: spike sorting with a constrained recurrent sparse autoencoder (CRsAE).

Public API: :func:`sort`, :class:`SortParams`, :class:`SortResult`, :func:`open_recording`,
:class:`InputError`, :data:`SORTER_NAME`.

Importing the package registers the ``crsae`` sorter with SpikeInterface (``run_sorter("crsae",
...)``) as soon as ``spikeinterface.sorters`` is imported, without importing it here.
"""
from importlib import metadata as _metadata

from ._register import SORTER_NAME, register_when_spikeinterface_loads
from .errors import InputError
from .params import SortParams

try:
    __version__ = _metadata.version("crsae-sort")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["sort", "SortParams", "SortResult", "open_recording", "InputError", "SORTER_NAME", "__version__"]

register_when_spikeinterface_loads()


def __getattr__(name):
    # heavy modules (torch, spikeinterface) load on first use, not on import
    if name in ("sort", "SortResult"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "open_recording":
        from .reading import open_recording

        return open_recording
    raise AttributeError(f"module 'crsae_sort' has no attribute {name!r}")
