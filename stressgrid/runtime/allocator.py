"""The C allocator's settings for a process that runs devices.

A read of a large response body hands the protocol one bytes object of up to 256 KiB
(uvloop reads that much at once). glibc serves an allocation over its mmap threshold
(128 KiB) with ``mmap``, shrinks it with ``mremap`` and frees it with ``munmap``: three
system calls and fresh pages per read. While TLS went through the loop's own layer,
every TLS read took such a buffer, which made a TLS request cost about four times wrk's
CPU (``python benchmarks/http1.py --tls``); our TLS layer (``stressgrid._core.tls``) now
reads into one 16 KiB buffer. ``keep_large_buffers_on_heap`` raises the threshold to
1 MiB, and the trim threshold to 4 MiB so that such a buffer freed at the top of the heap
is not handed back to the kernel each time. Elsewhere than glibc it does nothing.
"""
import ctypes

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20
TRIM_THRESHOLD_BYTES = 4 << 20


def keep_large_buffers_on_heap():
    """Tune this process's allocator (glibc's ``mallopt``); ``False`` where it cannot."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False   # not glibc: no mallopt
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
