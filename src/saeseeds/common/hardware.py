"""What the hardware multiplies fast: the screens of matching and training use bfloat16 only where it is native."""

from __future__ import annotations

import torch


def native_bf16(device: torch.device) -> bool:
    """True where a bfloat16 matmul is faster than float32: CUDA, and CPUs with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


__all__ = ["native_bf16"]
