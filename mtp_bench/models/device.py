"""Where and how a trial computes: its device, its precision (autocast dtype) and its seeding. Below both the
training loop and evaluation, which run under the same autocast."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but no CUDA device is visible")
    return device


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. CPU runs stay fp32 under ``auto`` (repeatable and fast enough).
    ``bf16-pure`` autocasts to bf16 as well: its weights are bf16 already, and autocast keeps losses in fp32."""
    if name == "fp32":
        return None
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    return torch.float16 if name == "fp16" else torch.bfloat16


def cast_weights(module: torch.nn.Module, precision: str) -> torch.nn.Module:
    """Under ``bf16-pure``, the module's floating-point parameters in bf16 (AdamW's state then follows them); every
    other setting leaves them as built (fp32). Buffers keep their dtype, as when a model is loaded in bf16: rotary
    inverse frequencies stay fp32."""
    if precision == "bf16-pure":
        for parameter in module.parameters():
            if parameter.is_floating_point():
                parameter.data = parameter.data.to(torch.bfloat16)
    return module


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield
