"""Give memory freed after a burst of large uploads back to the operating system.

CPython frees a 19 MiB upload or a decoded photo with ``free()``, but glibc keeps freed heap memory
in its arenas for reuse (and past the first such free, raises its mmap threshold so later ones come
from the heap too): after a burst the process stays at its peak size although nothing uses that
memory (measured in docs/performance.md, "Memory under large uploads"). ``malloc_trim(0)`` releases
what is free in every arena. It costs a few milliseconds, so it runs in a worker thread, and only when
the last request holding a large upload has finished. On a C library without it, nothing is done.
The backend adds its own part (ONNX Runtime's arena: ``OnnxBackend.release_memory``).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

log = logging.getLogger("serving")

try:
    _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    _trim.argtypes, _trim.restype = [ctypes.c_size_t], ctypes.c_int
except (OSError, AttributeError):  # not glibc (musl, macOS): its allocator behaves otherwise
    _trim = None


def release_free_memory() -> None:
    if _trim is not None:
        _trim(0)


def in_background(release: Callable[[], None]) -> None:
    """Run ``release`` off the event loop; the request that triggers it does not wait for it."""

    def guarded() -> None:
        started = time.perf_counter()
        try:
            release()
        except Exception as error:  # memory not handed back is no reason to disturb anything else
            log.warning("could not hand memory back after a burst: %s", error)
        else:
            log.info(
                "memory handed back after a burst of large uploads (%.0f ms)", 1000 * (time.perf_counter() - started)
            )

    asyncio.get_running_loop().run_in_executor(None, guarded)
