"""Where training and prediction run: device choice, moving batches, and mixed precision.

``resolve_device('auto')`` is CUDA when PyTorch sees a GPU and the CPU otherwise. ``autocast(device, amp)``
gives bfloat16 autocasting on CUDA (bfloat16 keeps float32's exponent range, so no gradient scaler is needed)
and is a no-op when ``amp`` is off. Models and optimisers keep float32 master weights either way.
"""
from __future__ import annotations

import contextlib

import torch


def resolve_device(name: str | None = "auto") -> torch.device:
    from elprop.core.dataset import InputError
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: PyTorch sees no CUDA GPU here (torch {torch.__version__}); "
                         "use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name!r} is not a device (auto, cpu, cuda, cuda:1, ...)") from None


def to_device(batch, device):
    """A batch (tensor, dict or tuple of tensors) on ``device``; non-tensors pass through."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def autocast(device, amp: bool):
    """bfloat16 autocast on ``device`` when ``amp``; otherwise a null context."""
    device = torch.device(device)
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def net_device(net) -> torch.device:
    p = next(net.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def machine_description(device="cpu") -> str:
    """'x86_64 <processor>', with the GPU's name when ``device`` is CUDA (recorded in run configs)."""
    import platform
    cpu = platform.processor()
    if not cpu or cpu == platform.machine():
        try:  # Linux: the CPU model name
            with open("/proc/cpuinfo") as fh:
                cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
        except OSError:
            pass
    m = f"{platform.machine()} {cpu}".strip()
    if str(device).startswith("cuda"):
        m += f", {torch.cuda.get_device_name(torch.device(device))}"
    return m
