"""Checks that a SpikeInterface description or saved folder builds only SpikeInterface objects, before it is loaded.

``spikeinterface.load`` rebuilds an object from what a file names: a JSON description's ``"class"``
(``"module.Class"``) is imported and called with its ``"kwargs"``, so a description naming
``"subprocess.Popen"`` would run a command; a ``.pkl`` description is unpickled, and a saved folder's
``properties/*.npy`` are read with ``allow_pickle=True``, so either can run code of the file's choice.
Inputs (a recording description or folder, a ground-truth sorting, an output folder the report reopens)
may come from elsewhere, so before SpikeInterface reads them:

* every object a JSON description builds (any dict with ``"class"`` and ``"kwargs"``, nested ones
  included) must name a class of the ``spikeinterface`` package;
* pickle files (``.pkl``, ``.pickle``) are refused: what they build cannot be known without running them;
* in a folder, every JSON file is checked as above, the pickled description of an old folder
  (``cached.pkl`` without ``si_folder.json``) is refused, and every ``.npy`` must hold plain data (not
  pickled objects). Other pickles in a folder (``provenance.pkl``) are not read by ``load``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError

ALLOWED_PACKAGE = "spikeinterface"
PICKLE_SUFFIXES = (".pkl", ".pickle")
# how deep a folder is searched for the JSON and .npy files SpikeInterface reads (sub-folders of a saved
# object: properties/, a sorting's spikes, a group's members)
MAX_DEPTH = 3


def check_description(described, source: Path | str) -> None:
    """Raise :class:`InputError` unless every object ``described`` (a parsed JSON description) builds is a
    ``spikeinterface`` class."""
    for class_name in _classes(described):
        if not (isinstance(class_name, str) and class_name.split(".")[0] == ALLOWED_PACKAGE):
            raise InputError(f"{source} asks SpikeInterface to build {class_name!r}, which is not a SpikeInterface "
                             f"class; only descriptions of SpikeInterface objects are opened (loading others "
                             f"could run code): pass a file written by recording.dump_to_json(...) or the "
                             f"folder of recording.save(...)")


def check_file(path: Path) -> None:
    """A description file SpikeInterface is about to load: JSON checked, pickle refused."""
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise InputError(f"{path} is a pickle, and opening a pickle runs whatever code it holds; crsae-sort does not "
                         f"open pickled descriptions: save the recording as JSON (recording.dump_to_json(...)) or "
                         f"as a folder (recording.save(folder=...)) and pass that")
    if path.suffix == ".json":
        try:
            described = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is not valid JSON ({exc}); pass a file written by SpikeInterface") from exc
        check_description(described, path)


def check_folder(folder: Path) -> None:
    """A saved SpikeInterface folder about to be loaded: its JSON files checked, pickled files refused."""
    folder = Path(folder)
    for path in _files(folder, 0):
        if path.suffix in PICKLE_SUFFIXES and path.stem == "cached" and not (
                (path.parent / "si_folder.json").exists() or (path.parent / "cached.json").exists()):
            check_file(path)  # an old folder whose description SpikeInterface would unpickle: refused
        elif path.suffix == ".json":
            check_file(path)
        elif path.suffix == ".npy" and _holds_objects(path):
            raise InputError(f"{path} holds pickled Python objects, and reading it could run code; crsae-sort "
                             f"opens only folders of plain arrays (as recording.save(...) and sorting.save(...) "
                             f"write them)")


def _files(folder: Path, depth: int):
    for path in sorted(folder.iterdir()):
        if path.is_dir() and depth < MAX_DEPTH:
            yield from _files(path, depth + 1)
        elif path.is_file():
            yield path


def _holds_objects(path: Path) -> bool:
    """Whether the ``.npy`` at ``path`` stores Python objects (a pickle) rather than plain data."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable .npy file ({exc})") from exc
    return bool(header[2].hasobject)


def _classes(node):
    """Every ``"class"`` of a dict that also has ``"kwargs"`` in a parsed JSON tree."""
    if isinstance(node, dict):
        if "class" in node and "kwargs" in node:
            yield node["class"]
        for value in node.values():
            yield from _classes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _classes(value)
