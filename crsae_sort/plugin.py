"""The ``crsae`` sorter for SpikeInterface: ``run_sorter("crsae", recording, folder=...)``.

Defaults and descriptions come from :mod:`crsae_sort.params`; parameters are validated by
:meth:`SortParams.from_dict`, so errors read exactly as on the command line. The sort itself is
:func:`crsae_sort.sort`, writing its usual output folder to ``sorter_output/crsae/``.
Imported by the registration hook in :mod:`crsae_sort._register`, never by ``import crsae_sort``.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import shutil
from pathlib import Path

from spikeinterface.sorters.basesorter import BaseSorter

from .errors import InputError
from .io import descriptions
from .params import SortParams, default_params, describe

logger = logging.getLogger(__name__)

OUTPUT_SUBFOLDER = "crsae"  # our output folder inside the sorter's sorter_output/


def _descriptions() -> dict[str, str]:
    out = {}
    for row in describe():
        extra = ", ".join(x for x in (row["unit"], row["bounds"]) if x)
        out[row["name"]] = f"{row['help']} ({extra})" if extra else row["help"]
    return out


class CrsaeSorter(BaseSorter):
    """CRsAE spike sorter (crsae-sort) as a SpikeInterface sorter."""

    sorter_name = "crsae"
    gpu_capability = "nvidia-optional"
    requires_locations = False
    requires_binary_data = False
    handle_multi_segment = True
    compatible_with_parallel = {"loky": True, "multiprocessing": True, "threading": False}
    sorter_description = ("CRsAE: a constrained recurrent sparse autoencoder whose weights are the spike "
                          "templates (Tolooshams, Dey & Ba, IEEE TNNLS 2020); crsae-sort, PyTorch on CPU or GPU.")
    installation_mesg = "pip install crsae-sort (and torch: pip install torch)"

    _default_params = default_params()
    _params_description = _descriptions()

    @classmethod
    def is_installed(cls) -> bool:
        return importlib.util.find_spec("torch") is not None

    @classmethod
    def get_sorter_version(cls) -> str:
        from .runlog import package_version

        return package_version()

    @classmethod
    def use_gpu(cls, params) -> bool:
        return params.get("device", "auto") != "cpu"

    @classmethod
    def initialize_folder(cls, recording, output_folder, verbose, remove_existing_folder):
        """SpikeInterface writes the recording's description into the folder and the sort reads it back from
        there, so a recording that lives only in memory is refused first, before any folder is made or removed."""
        if hasattr(recording, "check_serializability") and not (recording.check_serializability("json")
                                                                or recording.check_serializability("pickle")):
            raise InputError("run_sorter('crsae', ...) reads the recording back from a file, and this recording "
                             "lives only in memory: save it first, "
                             "recording = recording.save(folder='my_recording'), then run_sorter('crsae', recording, "
                             "folder=...); nothing was written")
        return super().initialize_folder(recording, output_folder, verbose, remove_existing_folder)

    @classmethod
    def set_params_to_folder(cls, recording, output_folder, new_params, verbose):
        SortParams.from_dict(new_params)  # the CLI's messages for unknown keys and bad values
        return super().set_params_to_folder(recording, output_folder, new_params, verbose)

    @classmethod
    def _check_params(cls, recording, output_folder, params):
        return SortParams.from_dict(params).to_dict()

    @classmethod
    def _setup_recording(cls, recording, sorter_output_folder, params, verbose):
        pass  # the sort reads the recording through SpikeInterface: nothing to copy

    @classmethod
    def _run_from_folder(cls, sorter_output_folder, params, verbose):
        from .threads import prefer_passive_waiting

        prefer_passive_waiting()  # before torch loads, in a fresh worker (crsae_sort.threads)
        from .pipeline import sort

        sorter_output_folder = Path(sorter_output_folder)
        recording = cls.load_recording_from_folder(sorter_output_folder.parent, with_warnings=False)
        target = sorter_output_folder / OUTPUT_SUBFOLDER
        try:
            sort(recording, target, SortParams.from_dict(params), progress=bool(verbose))
        finally:
            log = target / "crsae_sort.log"
            if log.exists():  # SpikeInterface copies <sorter_name>.log into spikeinterface_log.json
                shutil.copyfile(log, sorter_output_folder / f"{cls.sorter_name}.log")

    @classmethod
    def _get_result_from_folder(cls, sorter_output_folder):
        from spikeinterface.core import load

        folder = Path(sorter_output_folder) / OUTPUT_SUBFOLDER / "sorting"
        if not folder.exists():
            raise FileNotFoundError(f"{folder} does not exist: the crsae sort did not finish; see "
                                    "spikeinterface_log.json beside sorter_output/")
        descriptions.check_folder(folder)
        return load(folder)


def register() -> type[CrsaeSorter]:
    """Insert :class:`CrsaeSorter` into SpikeInterface's sorter registry, in place. Idempotent."""
    sorterlist = importlib.import_module("spikeinterface.sorters.sorterlist")
    full = sorterlist.sorter_full_list
    if sorterlist.sorter_dict.get(cls_name := CrsaeSorter.sorter_name) is not CrsaeSorter or CrsaeSorter not in full:
        full[:] = [s for s in full if s.sorter_name != cls_name] + [CrsaeSorter]
        sorterlist.sorter_dict[cls_name] = CrsaeSorter
        logger.debug("registered the %r sorter with SpikeInterface", cls_name)
    return CrsaeSorter


register()  # importing this module means SpikeInterface's sorters are loaded: register now (idempotent)
