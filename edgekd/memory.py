"""Hand freed memory back to the operating system between a build's stages.

glibc keeps the heap a stage grew to (a training epoch's activations, an evaluation's batches)
for later allocations, and torch allocates through it: a build's resident memory would ratchet
up by what each stage leaves free behind it. ``malloc_trim(0)`` returns those free pages.
Measured with timm's ``test_efficientnet`` at 128 px, batch 64, after 100 training steps and an
evaluation: 1045 MB resident before, 755 MB after. Where the C library has no ``malloc_trim``
(musl, macOS, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

__all__ = ["release_free_memory"]


def release_free_memory() -> None:
    """Collect garbage, then return the C heap's free pages to the operating system."""
    gc.collect()
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or None).malloc_trim
    except (OSError, AttributeError):
        return
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
