"""crsae-sort: spike sorting with a constrained recurrent sparse autoencoder (CRsAE).

Public API: :func:`sort`, :class:`SortParams`, :class:`SortResult`, :func:`open_recording`,
:class:`InputError`, :data:`SORTER_NAME`.

Importing the package registers the ``crsae`` sorter with SpikeInterface (``run_sorter("crsae",
...)``) as soon as ``spikeinterface.sorters`` is imported, without importing it here.
"""
from ._register import SORTER_NAME, register_when_spikeinterface_loads
from .errors import InputError

__all__ = ["sort", "SortParams", "SortResult", "open_recording", "InputError", "SORTER_NAME", "__version__"]

register_when_spikeinterface_loads()


def __getattr__(name):
    # everything else loads on first use: `import crsae_sort` runs at every interpreter start
    # where the SpikeInterface hook is installed (crsae-sort install-si-hook)
    if name == "__version__":
        from .runlog import package_version

        globals()["__version__"] = package_version()
        return globals()["__version__"]
    if name == "SortParams":
        from .params import SortParams

        return SortParams
    if name in ("sort", "SortResult"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "open_recording":
        from .io.reading import open_recording

        return open_recording
    raise AttributeError(f"module 'crsae_sort' has no attribute {name!r}")
