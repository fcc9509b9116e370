"""The one way a long signal is cut into chunks with margins.

A chunk owns the samples ``[start, end)`` and is read as ``[lo, hi)``: ``margin`` more samples
each side (clipped to the signal), so that what is computed inside ``[start, end)`` does not see
the cut. Whoever processes a chunk keeps only results that fall in ``[start, end)``: something
near a boundary is seen by two chunks but belongs to exactly one. Memory is set by the chunk
length, never by the signal's.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    segment: int   # segment index
    start: int     # first owned sample
    end: int       # one past the last owned sample
    lo: int        # first sample read
    hi: int        # one past the last sample read


def with_margin(start: int, end: int, length: int, margin: int, tail: int = 0) -> tuple[int, int]:
    """``(lo, hi)`` = ``[start - margin, end + margin + tail)`` clipped to ``[0, length + tail)``.

    ``tail`` covers a signal ``tail`` samples longer than the positions being chunked (codes of
    a valid convolution: ``N - K + 1`` positions read ``K - 1`` more samples).
    """
    return max(0, start - margin), min(length + tail, end + margin + tail)


def chunks(lengths: Sequence[int], chunk: int, margin: int, tail: int = 0) -> Iterator[Chunk]:
    """Chunks of ``chunk`` samples over segments of the given ``lengths``, in order."""
    if chunk < 1:
        raise ValueError(f"chunk of {chunk} samples; it must be at least 1")
    for segment, length in enumerate(lengths):
        for start in range(0, length, chunk):
            end = min(start + chunk, length)
            yield Chunk(segment, start, end, *with_margin(start, end, length, margin, tail))
