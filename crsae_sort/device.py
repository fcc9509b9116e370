"""Resolving the torch device once, at the entry point."""
from __future__ import annotations

import logging

import torch

from .errors import InputError, option

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> first CUDA device if present, else CPU; a requested missing GPU is an error.

    Called once per run, at the entry point; the run logs the device with :func:`describe_device`.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            cpu = option("device='cpu'", "--device cpu")
            raise InputError(f"device {name!r} requested but torch sees no CUDA GPU "
                             f"(torch {torch.__version__}); use {cpu} or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise InputError(f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
        device = torch.device("cuda", index)
    else:
        device = torch.device("cpu")
    return device


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{device} ({props.name}, {props.total_memory / 2**30:.1f} GiB)"
    return f"cpu ({torch.get_num_threads()} threads)"


def warm_up(device: torch.device) -> None:
    """Start the GPU's libraries (context, cuDNN convolutions, cuSOLVER eigen-solves, autograd) once.

    The first call of each costs seconds on a fresh process; paying them here keeps them out of
    the training and inference timings, so the log says where the time went. No-op on the CPU.
    """
    if device.type != "cuda":
        return
    import torch.nn.functional as F

    x = torch.randn(2, 4, 64, device=device, requires_grad=True)
    w = torch.randn(3, 4, 8, device=device, requires_grad=True)
    F.conv1d(x, w).square().sum().backward()
    torch.linalg.eigvalsh(torch.eye(4, device=device, dtype=torch.complex128)[None].repeat(8, 1, 1))
    torch.cuda.synchronize(device)
