"""Registering the ``crsae`` sorter with SpikeInterface, without importing SpikeInterface.

SpikeInterface has no entry-point registry: ``run_sorter("crsae", ...)`` looks the name up in
``spikeinterface.sorters.sorterlist.sorter_dict``. ``import crsae_sort`` calls
:func:`register_when_spikeinterface_loads`: if SpikeInterface's sorters are already imported the
sorter is inserted at once, otherwise a post-import hook inserts it the moment
``spikeinterface.sorters.sorterlist`` finishes loading. Either way ``import crsae_sort`` stays
light (no torch, no SpikeInterface) and registration is idempotent.

Worker processes that never import ``crsae_sort`` (loky, dask, slurm scripts) get it two ways:

* :data:`SORTER_NAME` is the string ``"crsae"`` that imports and registers ``crsae_sort`` when it
  is unpickled, so job lists built with it work on any engine that pickles its jobs;
* ``crsae-sort install-si-hook`` writes a ``.pth`` file that imports ``crsae_sort`` at interpreter
  start-up in that environment, so even a literal ``"crsae"`` works everywhere.
"""
from __future__ import annotations

import importlib.abc
import logging
import sys

logger = logging.getLogger(__name__)

SORTERLIST = "spikeinterface.sorters.sorterlist"
PTH_NAME = "crsae_sort_spikeinterface_hook.pth"
# one line: .pth files execute lines that start with "import"; a missing package stays silent
PTH_LINE = 'import sys; exec("try:\\n    import crsae_sort\\nexcept Exception:\\n    pass")\n'


def _sorter_name() -> "_SorterName":
    register_when_spikeinterface_loads()
    return SORTER_NAME


class _SorterName(str):
    """``"crsae"``; unpickling it in another process imports crsae_sort, which registers the sorter."""

    def __reduce__(self):
        return (_sorter_name, ())


SORTER_NAME = _SorterName("crsae")


def register_when_spikeinterface_loads() -> None:
    """Register now if SpikeInterface's sorter list is loaded, else when it loads. Idempotent."""
    if SORTERLIST in sys.modules:
        _register_now()
        return
    if not any(isinstance(f, _PostImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder())


def _register_now() -> None:
    module = sys.modules.get(f"{__package__}.plugin")
    if module is not None and not hasattr(module, "register"):
        return  # plugin.py itself is being imported (it loads SpikeInterface): it registers when done
    try:
        from .plugin import register
        register()
    except Exception:  # never break SpikeInterface's own import
        logger.warning("could not register the crsae sorter with SpikeInterface", exc_info=True)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of ``spikeinterface.sorters.sorterlist`` to register right after it runs."""

    def find_spec(self, fullname, path, target=None):
        if fullname != SORTERLIST:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # get_source, get_filename, ... for tracebacks and inspect
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _PostImportFinder)]
        _register_now()
