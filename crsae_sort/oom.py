"""The one out-of-memory fallback: run a batch in more, smaller parts when the GPU runs out.

Used by inference (rows of screened segments), training (micro-batches with accumulated
gradients: the same gradient as one pass) and the held-out loss. On a CPU out-of-memory is not
caught here (it is the operating system's to report).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from .errors import InputError

logger = logging.getLogger(__name__)


def run_in_parts(fn: Callable[[torch.Tensor], object], batch: torch.Tensor, n_parts: int = 1, *,
                 what: str = "a batch", on_retry: Callable[[], None] | None = None,
                 exhausted: str | None = None) -> tuple[list, int]:
    """``[fn(part) for part in torch.tensor_split(batch, n_parts)]`` and the ``n_parts`` that fitted.

    On ``torch.OutOfMemoryError`` the work so far is dropped (``on_retry()`` undoes side effects
    such as accumulated gradients), the CUDA cache is emptied, ``n_parts`` doubles (at most one
    item a part) and everything is redone; the caller may keep the returned ``n_parts`` for the
    next batch. When one item a part still does not fit, ``exhausted`` (if given) is raised as an
    :class:`InputError` that says what to change, else the error itself.
    """
    n_parts = max(1, min(n_parts, len(batch)))
    while True:
        try:
            return [fn(part) for part in torch.tensor_split(batch, n_parts)], n_parts
        except torch.OutOfMemoryError:
            if n_parts >= len(batch):
                if exhausted is not None:
                    raise InputError(exhausted) from None
                raise
            if on_retry is not None:
                on_retry()
            if batch.is_cuda:
                torch.cuda.empty_cache()
            n_parts = min(2 * n_parts, len(batch))
            logger.warning("out of memory on %s of %d on %s: continuing in %d micro-batches", what, len(batch),
                           batch.device, n_parts)
