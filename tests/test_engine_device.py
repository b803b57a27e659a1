"""Device choice, fallback order, failure classification and precision support (availability simulated)."""

from __future__ import annotations

import pytest
import torch

from restorecli.engine.device import (
    fallback_chain,
    is_out_of_memory,
    is_unsupported_operator,
    may_fall_back,
    precision_dtype,
    resolve_device,
    supported_precisions,
)
from restorecli.errors import ConfigError, DeviceError


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """Set which accelerators the process sees: ``machine(cuda=2, mps=True)``."""

    def configure(cuda: int = 0, mps: bool = False, bf16: bool = True) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return configure


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(1, True, "cuda"), (2, False, "cuda"), (0, True, "mps"), (0, False, "cpu")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(machine, cuda: int, mps: bool, expected: str) -> None:
    machine(cuda=cuda, mps=mps)
    assert resolve_device("auto").type == expected


def test_explicit_devices_resolve_when_available(machine) -> None:
    machine(cuda=2, mps=True)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("CUDA") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(" mps ") == torch.device("mps")


@pytest.mark.parametrize(("request_text", "named"), [("cuda", "CUDA"), ("cuda:0", "CUDA"), ("mps", "mps")])
def test_unavailable_device_is_an_error_naming_it(machine, request_text: str, named: str) -> None:
    machine(cuda=0, mps=False)
    with pytest.raises(DeviceError, match=f"{named} is not available.*{request_text}"):
        resolve_device(request_text)


def test_cuda_index_beyond_device_count_is_an_error(machine) -> None:
    machine(cuda=2)
    with pytest.raises(DeviceError, match="index below 2, but got 2"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("text", ["gpu", "cpu:0", "mps:1", "cuda:", "cuda:x", ""])
def test_malformed_device_text_is_rejected(text: str) -> None:
    with pytest.raises(DeviceError, match="Expected a device among auto, cpu, cuda, cuda:N, mps"):
        resolve_device(text)


def test_fallback_chain(machine) -> None:
    machine(cuda=1, mps=False)
    assert fallback_chain(torch.device("cuda", 0)) == [torch.device("cpu")]
    assert fallback_chain(torch.device("mps")) == [torch.device("cpu")]
    assert fallback_chain(torch.device("cpu")) == []
    machine(cuda=1, mps=True)
    assert fallback_chain(torch.device("cuda")) == [torch.device("mps"), torch.device("cpu")]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("CUDA error: out of memory"), True),
        (RuntimeError("MPS backend out of memory (MPS allocated: 8.00 GB)"), True),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"), True),
        (RuntimeError("Given groups=1, weight of size [8, 3, 3, 3], expected input to have 3 channels"), False),
        (ValueError("out of memory"), False),
    ],
)
def test_out_of_memory_detection(error: BaseException, expected: bool) -> None:
    assert is_out_of_memory(error) is expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NotImplementedError("The operator 'aten::eigh' is not currently implemented for the MPS device."), True),
        (RuntimeError("The operator 'aten::foo' is not currently implemented for the MPS device"), True),
        (RuntimeError("CUDA error: device-side assert triggered"), False),
        (torch.cuda.OutOfMemoryError("CUDA out of memory"), False),
    ],
)
def test_unsupported_operator_detection(error: BaseException, expected: bool) -> None:
    assert is_unsupported_operator(error) is expected


def test_precisions_per_device(machine) -> None:
    machine(cuda=1, bf16=True)
    assert supported_precisions(torch.device("cuda")) == ("fp32", "fp16", "bf16")
    machine(cuda=1, bf16=False)
    assert supported_precisions(torch.device("cuda")) == ("fp32", "fp16")
    assert supported_precisions(torch.device("cpu")) == ("fp32", "bf16")
    assert supported_precisions(torch.device("mps")) == ("fp32",)
    assert precision_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    assert precision_dtype(torch.device("cuda"), "fp16") == torch.float16


@pytest.mark.parametrize(
    ("device", "precision", "message"),
    [
        ("cpu", "fp16", r"precision cpu supports \(fp32, bf16\), but got fp16"),
        ("mps", "bf16", r"precision mps supports \(fp32\), but got bf16"),
        ("cpu", "fp64", r"precision among fp32, bf16, fp16, but got 'fp64'"),
    ],
)
def test_unsupported_precision_is_a_config_error(device: str, precision: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        precision_dtype(torch.device(device), precision)


@pytest.mark.parametrize(
    ("request_text", "allowed"),
    [("auto", True), (" AUTO ", True), ("cuda", False), ("cuda:1", False), ("mps", False), ("cpu", False)],
)
def test_only_auto_may_fall_back(request_text: str, allowed: bool) -> None:
    assert may_fall_back(request_text) is allowed
