"""This machine's fp32 FLOP peak, two ways, so a model's throughput can be read as a share of it.

* *nominal*: cores x clock x FLOPs per cycle, from ``/proc/cpuinfo``: the ``cpu MHz`` line, and the
  ``avx512f`` / ``avx2`` + ``fma`` flags read as two FMA units per core of 16 / 8 fp32 lanes
  (2 FLOPs per lane per FMA). Flags cannot tell how wide the units really are: AMD Zen 4 reports
  ``avx512f`` but runs 512-bit FMAs as two 256-bit halves, so there the nominal figure is twice the
  real one.
* *measured*: the best rate of a large float32 matrix product through NumPy's BLAS, the peak a
  well-tuned kernel actually reaches here. Shares are quoted against this one.

Both are taken for the number of threads the model runs with (one core's peak for ``--threads 1``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Peak:
    cores: int
    mhz: float
    flops_per_cycle: int
    vector: str
    measured_gflops: float

    @property
    def nominal_gflops(self) -> float:
        return self.cores * self.mhz / 1000 * self.flops_per_cycle

    def describe(self) -> str:
        return (
            f"nominal {self.nominal_gflops:.0f} GFLOP/s ({self.cores} cores x {self.mhz / 1000:.2f} GHz x "
            f"{self.flops_per_cycle} FLOPs/cycle: {self.vector}, 2 FMA units assumed); measured "
            f"{self.measured_gflops:.0f} GFLOP/s (best float32 2048x2048 NumPy matmul, {self.cores} threads)"
        )


def _cpuinfo() -> tuple[float, set[str]]:
    path = Path("/proc/cpuinfo")
    mhz, flags = 0.0, set()
    if path.is_file():
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "cpu MHz" and not mhz:
                mhz = float(value)
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return mhz, flags


def flops_per_cycle(flags: set[str]) -> tuple[int, str]:
    """fp32 FLOPs per cycle and core, assuming two FMA units of the widest vector width the flags show."""
    if "avx512f" in flags:
        return 2 * 16 * 2, "AVX-512 FMA"
    if "avx2" in flags and "fma" in flags:
        return 2 * 8 * 2, "AVX2 FMA"
    return 2 * 4, "SSE (no FMA)"


def measured_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Best rate of a ``size`` x ``size`` float32 matmul (2 n^3 FLOPs) over ``repeats`` runs on ``threads`` threads."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        return _matmul_gflops(size, repeats)


def _matmul_gflops(size: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # warm-up: BLAS threads start, pages are touched
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def machine_peak(threads: int | None = None) -> Peak:
    """The peak of ``threads`` cores (default: all of them)."""
    cores = min(threads or os.cpu_count() or 1, os.cpu_count() or 1)
    mhz, flags = _cpuinfo()
    per_cycle, vector = flops_per_cycle(flags)
    return Peak(cores, mhz, per_cycle, vector, measured_gflops(cores))
