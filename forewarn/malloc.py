"""Where the C allocator puts large buffers, for a process that snapshots its state.

With recovery, every epoch pickles each touched stage's record: the sequencer's is one
buffer of tens of megabytes at a million subscribers, freed once Bytewax has stored it.
glibc's ``malloc`` maps a buffer that large on its own and unmaps it when it is freed,
but after the first such free it raises its threshold to that size (the "dynamic mmap
threshold"), so the next ones come from the heap, among the small objects allocated in
between, and the heap cannot give them back. A fixed threshold keeps every buffer above
it mapped, and returned when freed: at 1 M subscribers with recovery, 276 B of resident
memory per subscriber in flow state against 318 B (``bench/RESULTS.md``, "Memory per
subscriber"). It is 4 MiB, not glibc's starting 128 KiB: the many mid-size snapshots
(sites, gates) then stay in the heap, where each epoch reuses their space, instead of a
system call and fresh pages each (the 1 M load took 361 s at 128 KiB, 148 s at 4 MiB).

>>> keep_large_buffers_mapped() in (True, False)
True
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: glibc's ``M_MMAP_THRESHOLD`` (``malloc.h``), and the threshold set.
_M_MMAP_THRESHOLD = -3
THRESHOLD = 4 * 1024 * 1024


def keep_large_buffers_mapped(threshold: int = THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes for this process (Python's own
    small objects are not affected: they live in its arenas). Whether it took effect
    (False where the C library is not glibc)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, threshold) == 1
