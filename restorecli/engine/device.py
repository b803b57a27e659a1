"""Device choice, fallback order, failure classification and precision support.

``auto`` prefers CUDA, then Apple MPS, then the CPU. An explicit request for a device that is not
available is an error (never a silent substitute); falling back at run time is the runner's job,
allowed by :func:`may_fall_back` (``auto`` only, announced), and uses :func:`fallback_chain` and the
two classifiers below.
"""

from __future__ import annotations

import re

import torch

from restorecli.engine.options import PRECISIONS, Precision
from restorecli.errors import ConfigError, DeviceError

__all__ = [
    "PRECISIONS",
    "PRECISION_DTYPES",
    "Precision",
    "fallback_chain",
    "is_out_of_memory",
    "is_unsupported_operator",
    "may_fall_back",
    "precision_dtype",
    "resolve_device",
    "supported_precisions",
]

PRECISION_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")
_MPS_UNSUPPORTED = "not currently implemented for the MPS device"
# CUDA/MPS ("out of memory"), the CPU allocator on Linux/macOS ("can't allocate memory") and on Windows.
_OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "not enough memory")


def cuda_available() -> bool:
    """True when a CUDA device can be used."""
    return torch.cuda.is_available()


def mps_available() -> bool:
    """True when Apple's Metal (MPS) backend can be used."""
    return torch.backends.mps.is_available()


def resolve_device(request: str = "auto") -> torch.device:
    """Turn ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` into an available ``torch.device``.

    ``auto`` picks CUDA, then MPS, then the CPU. ``cuda`` (no index) means the current CUDA device.

    Raises:
        DeviceError: the text is not one of the forms above, or names a device that is not available.
    """
    match = _DEVICE_PATTERN.match(request.strip().lower())
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise DeviceError(f"Expected a device among auto, cpu, cuda, cuda:N, mps, but got {request!r}")
    kind, index = match.group(1), match.group(2)
    if kind == "auto":
        if cuda_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not mps_available():
            raise DeviceError(f"Expected an available device, but mps is not available on this machine ({request})")
        return torch.device("mps")
    if not cuda_available():
        raise DeviceError(f"Expected an available device, but CUDA is not available on this machine ({request})")
    if index is None:
        return torch.device("cuda")
    count = torch.cuda.device_count()
    if int(index) >= count:
        raise DeviceError(f"Expected a CUDA device index below {count}, but got {index} ({request})")
    return torch.device("cuda", int(index))


def may_fall_back(request: str) -> bool:
    """The one fallback policy: only a device chosen by ``auto`` may be replaced at run time.

    A device the user named (``cuda``, ``cuda:1``, ``mps``, ``cpu``) is what they asked for: when it
    fails, the run stops with a DeviceError rather than quietly finishing somewhere else.
    """
    return request.strip().lower() == "auto"


def fallback_chain(device: torch.device) -> list[torch.device]:
    """The devices to try, in order, after ``device`` fails at run time (empty after the CPU).

    CUDA falls back to MPS (when present) and then the CPU; MPS falls back to the CPU.
    """
    if device.type == "cuda":
        return ([torch.device("mps")] if mps_available() else []) + [torch.device("cpu")]
    if device.type == "mps":
        return [torch.device("cpu")]
    return []


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an allocator failure that smaller tiles might avoid.

    Recognises ``torch.cuda.OutOfMemoryError`` and the plain RuntimeErrors older PyTorch builds,
    the MPS backend (``MPS backend out of memory``) and the CPU allocator
    (``DefaultCPUAllocator: can't allocate memory``) raise instead.
    """
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    message = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(text in message for text in _OUT_OF_MEMORY_MESSAGES)


def is_unsupported_operator(exc: BaseException) -> bool:
    """True when the device lacks an operator the model uses (typically MPS), so another device may work.

    PyTorch raises NotImplementedError ("The operator 'aten::...' is not currently implemented for the
    MPS device"); some builds wrap the same text in a RuntimeError.
    """
    return isinstance(exc, NotImplementedError) or (isinstance(exc, RuntimeError) and _MPS_UNSUPPORTED in str(exc))


def supported_precisions(device: torch.device) -> tuple[str, ...]:
    """The precisions the runner can use on ``device``.

    fp32 runs everywhere; fp16 needs CUDA; bf16 needs a CUDA device that supports it, or the CPU
    (where autocast to bf16 is implemented for convolutions and matrix products).
    """
    if device.type == "cuda":
        bf16 = ("bf16",) if torch.cuda.is_bf16_supported() else ()
        return ("fp32", "fp16", *bf16)
    if device.type == "cpu":
        return ("fp32", "bf16")
    return ("fp32",)


def precision_dtype(device: torch.device, precision: str) -> torch.dtype:
    """The autocast dtype for ``precision`` on ``device``.

    Raises:
        ConfigError: the precision is unknown, or ``device`` does not support it.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"Expected a precision among {', '.join(PRECISIONS)}, but got {precision!r}")
    supported = supported_precisions(device)
    if precision not in supported:
        raise ConfigError(f"Expected a precision {device} supports ({', '.join(supported)}), but got {precision}")
    return PRECISION_DTYPES[precision]
