"""Which devices compute in bfloat16 natively: the one home of every "auto" precision.

Autocast to bfloat16 pays only where the hardware has it. On a CPU without AVX512-BF16 or AMX
PyTorch emulates it: on an AVX2-only AMD EPYC a world encoder training step took 7.6 s in bf16
against 0.35 s in fp32 (``benchmarks/train_step.py``), so "auto" falls back to fp32 there.
"""

from __future__ import annotations

#: ``train.mixed_precision`` values: accelerate's own, and "auto" (bf16 where native, else "no")
MIXED_PRECISIONS = ("auto", "no", "fp16", "bf16")


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), so autocast to it is
    faster rather than emulated."""
    import torch

    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((probe and probe()) or (amx and amx()))


def bf16_native(device) -> bool:
    """Whether ``device`` (a torch.device) computes bfloat16 natively."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_bf16_supported()


def resolve_mixed_precision(value: str, device) -> str:
    """accelerate's ``mixed_precision`` for a config value: "auto" is "bf16" where ``device``
    computes it natively and "no" elsewhere; the other values pass through."""
    if value == "auto":
        return "bf16" if bf16_native(device) else "no"
    return value
