"""What the hardware multiplies fast: the screens of matching and training use bfloat16 only where it is native."""

from __future__ import annotations

import os

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


__all__ = ["native_bf16"]
