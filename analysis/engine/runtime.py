"""How a process that runs the engine on the CPU sets torch up, once, before its first model.

Two settings, both measured on this project's 2-core machines:
- one intra-op thread: two threads were 20-300x slower than one;
- freed tensors stay in the C heap. glibc hands a freed block back to the kernel when it lies
  above its mmap or trim threshold, and torch frees and re-allocates every feature map each
  batch, so every batch faulted its feature maps back in: ~20,000 page faults per forward
  pass over 768 shapes images, a forward 1.4x slower than with the memory kept. Keeping it
  costs a worker its peak heap as resident memory, which the next job needs again anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import torch

# mallopt(3) parameter numbers from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold above 32 MiB on 64-bit systems; larger tensors are still
# mapped and unmapped per allocation.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024


def configure_cpu_runtime(threads: int = 1) -> bool:
    """Pin torch to `threads` intra-op threads and keep freed memory in the heap.

    Out: True when the allocator settings took effect (glibc), False elsewhere.
    """
    torch.set_num_threads(threads)
    return keep_freed_memory()


@functools.cache  # process-wide settings: once is enough, and every job asks again
def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds so freed feature maps are reused, not unmapped.

    Out: True when both settings were accepted; False on a C library without mallopt.
    Cached: the settings hold for the whole process.
    """
    path = ctypes.util.find_library("c")
    if path is None:
        return False
    libc = ctypes.CDLL(path)
    if not hasattr(libc, "mallopt"):
        return False
    trimmed = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    mapped = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    return bool(trimmed and mapped)
