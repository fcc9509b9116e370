"""Resume checkpoints (``init.pt``, ``trained.pt``, ``grown.pt``, ``training.pt``) that load without running code.

A checkpoint is read back on ``--resume`` from an output folder that may be shared, so it is read with
``torch.load(weights_only=True)``: only tensors, numbers, strings and plain containers are unpickled, and a
file that holds anything else is refused instead of executed. What the stages cache is written in that
subset (:func:`encode`) and rebuilt from it (:func:`decode`):

* a numpy array becomes ``{"__kind__": "ndarray", "data": tensor}`` (its dtype kept), a numpy scalar a
  Python number;
* a CRsAE becomes ``{"__kind__": "crsae", "state": model.to_state(), "working_set_screen": ...}`` (rebuilt
  by ``CRsAE.from_state``);
* a dataclass decorated with :func:`checkpointed` becomes ``{"__kind__": "dataclass", "name": ...,
  "fields": {...}}``, rebuilt by calling that class on its fields (no other class is ever built);
* tuples, lists and dicts are encoded item by item.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, option
from ..model.crsae import CRsAE
from .outfolder import CHECKPOINT_FORMAT
from .results import save_torch

KIND = "__kind__"
_KINDS: dict[str, type] = {}


def checkpointed(cls: type) -> type:
    """Class decorator: the dataclass ``cls`` may be stored in a checkpoint and rebuilt from one (by name;
    no other class is ever built from a checkpoint)."""
    _KINDS[cls.__name__] = cls
    return cls


def encode(value):
    """``value`` in the subset ``torch.load(weights_only=True)`` reads (see the module docstring)."""
    if isinstance(value, np.generic):  # before float: np.float64 is a float, but pickles as a numpy object
        return value.item()
    if isinstance(value, torch.Tensor) or value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        return {KIND: "ndarray", "data": torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, CRsAE):
        return {KIND: "crsae", "state": value.to_state(), "working_set_screen": float(value.working_set_screen)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _KINDS.get(name) is not type(value):
            raise TypeError(f"{name} is not a checkpoint kind; decorate it with crsae_sort.io.checkpoints.checkpointed")
        return {KIND: "dataclass", "name": name,
                "fields": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, tuple):
        return tuple(encode(v) for v in value)
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if KIND in value:
            raise ValueError(f"a dict with the key {KIND!r} cannot be checkpointed")
        return {k: encode(v) for k, v in value.items()}
    raise TypeError(f"cannot checkpoint a {type(value).__name__}")


def decode(value, device: torch.device | str = "cpu"):
    """The value :func:`encode` was given (a CRsAE on ``device``)."""
    if isinstance(value, tuple):
        return tuple(decode(v, device) for v in value)
    if isinstance(value, list):
        return [decode(v, device) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(KIND)
    if kind is None:
        return {k: decode(v, device) for k, v in value.items()}
    if kind == "ndarray":
        return value["data"].numpy()
    if kind == "crsae":
        model = CRsAE.from_state(value["state"], device)
        model.working_set_screen = value["working_set_screen"]  # how training encodes (set per run, not saved)
        return model
    if kind == "dataclass" and value.get("name") in _KINDS:
        return _KINDS[value["name"]](**{k: decode(v, device) for k, v in value["fields"].items()})
    raise ValueError(f"unknown entry {kind!r} {value.get('name', '')}")


def save(path: Path, value) -> None:
    """Write ``value`` (encoded) to ``path`` atomically, tagged with :data:`CHECKPOINT_FORMAT`."""
    save_torch(dict(format=CHECKPOINT_FORMAT, value=encode(value)), path)


def load(path: Path, device: torch.device | str = "cpu"):
    """The value :func:`save` wrote to ``path``, its tensors on ``device``; a file of another version, or one
    that would need code to load, is a clear error."""
    again = option("resume=False, overwrite=True", "without --resume, with --overwrite")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # not a torch file, or one holding objects other than tensors and containers
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"checkpoint {path} cannot be read as plain tensors and containers ({reason}), so it was "
                         f"not written by this version of crsae-sort and is not loaded (loading it could run code): "
                         f"sort again {again}") from exc
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"checkpoint {path} was written by another version of crsae-sort; sort again {again}")
    try:
        return decode(blob["value"], device)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"checkpoint {path} is damaged ({exc}); sort again {again}") from exc
