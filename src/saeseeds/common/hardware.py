"""What the hardware multiplies fast: the screens of matching and training use bfloat16 only where it is native."""

from __future__ import annotations

import functools
import os
import warnings

import torch


def native_bf16(device: torch.device) -> bool:
    """True where a bfloat16 matmul is faster than float32: CUDA, and CPUs with AVX512-BF16 or AMX that torch
    uses at its AVX-512 level (ATEN_CPU_CAPABILITY=avx2 on such a CPU, as when emulating an AVX2-only one, makes
    bf16 5x slower than float32: measured on a Xeon with AMX)."""
    if device.type == "cuda":
        return True
    if device.type != "cpu" or not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()  # oneDNN runs the CPU's bf16 matmuls
    if not (isa == "ALL" or "AVX512" in isa or "AMX" in isa):
        return False
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


class full_precision_reductions:
    """On CUDA, forbids cuBLAS from reducing bf16 products in reduced precision (the error model needs float32)."""

    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = self.saved


@functools.lru_cache(maxsize=None)
def bf16_sums_in_float32(device: torch.device, d: int) -> bool:
    """True when a bf16 matmul of depth d sums in float32 and rounds its output to nearest, as the error model needs.

    Summed in bfloat16, 1 + (d - 1) * 2**-9 would stay 1; 1 + 3 * 2**-9 rounds to 1 + 2**-7 to nearest but to 1
    if the output were truncated (an error of 2**-7 instead of 2**-8).
    """
    depth = max(d, 4)
    x = torch.zeros((16, depth), device=device)
    x[:8] = 2.0**-9
    x[8:, 1:4] = 2.0**-9
    x[:, 0] = 1.0
    y = torch.ones((64, depth), device=device)
    with full_precision_reductions():
        got = (x.bfloat16() @ y.bfloat16().T).float()
    want = 1.0 + (depth - 1) * 2.0**-9
    summed = bool(((got[:8] - want).abs() <= 2.0**-8 * want + depth * 2.0**-24 * want).all())
    return summed and bool((got[8:] == 1.0 + 2.0**-7).all())


def use_bf16(choice: str, device: torch.device, depth: int, task: str, *, auto: bool = True) -> bool:
    """Resolves a screen setting ("auto", "bf16" or "fp32") to True for bfloat16, False for float32.

    "auto" takes bf16 where it is native (and `auto` allows it: the caller's own size rule); bf16 either way
    only if its matmul of this depth sums in float32, else float32 with a warning naming the `task`.
    """
    want = choice == "bf16" or (choice == "auto" and auto and native_bf16(device))
    if want and not bf16_sums_in_float32(device, depth):
        warnings.warn(f"bfloat16 matmul on this device does not sum in float32 or round to nearest; {task} in float32 instead", stacklevel=3)
        return False
    return want


def numba_kernels_run_side_by_side() -> bool:
    """True where two threads may run numba's parallel kernels at once: its OpenMP and TBB layers allow that, its
    fallback (workqueue, where neither library is found) does not, so work meant for two threads then runs in turn."""
    import numba

    threads = torch.get_num_threads()
    try:
        from numba.np.ufunc.parallel import _launch_threads

        _launch_threads()  # picks the layer, as the first parallel kernel would
        return numba.threading_layer() in ("omp", "tbb")
    except Exception:  # noqa: BLE001 - any doubt means one thread at a time
        return False
    finally:
        # Launching numba's OpenMP pool resets the shared runtime's thread count to every core (see
        # `numba_threads_as_torch`): a 3-thread job on 2 cores ran on 2, one on 16 cores would run on 16.
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def compiled_kernels_apply(*tensors: torch.Tensor) -> bool:
    """True where the compiled (numba) CPU kernels take these tensors: float32, contiguous, on the CPU (the kernels
    read them as numpy arrays in place)."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors)


def numba_threads_as_torch() -> None:
    """Gives numba's parallel kernels the job's share of the cores: torch's thread count (set per job), not every core.

    numba's OpenMP pool shares torch's OpenMP runtime, and launching it (on the first call here) resets the
    runtime's thread count to every core: a 1-thread job then ran torch on 2 threads from its first numba
    kernel on, and a training resumed from a saved state ran its first step's matmul on 1 thread where the
    uninterrupted run had used 2 (other bytes: MKL's sums depend on the thread count). torch's count is put back.
    """
    import numba

    threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


__all__ = [
    "bf16_sums_in_float32", "compiled_kernels_apply", "full_precision_reductions", "native_bf16", "numba_threads_as_torch",
    "use_bf16",
]
