"""Profile a network: parameters, MACs/FLOPs per module, latency, throughput and peak memory.

``restore profile`` is a thin wrapper over :func:`resolve_target` and :func:`profile`; the pieces
(:func:`count_macs`, :func:`breakdown`, :func:`measure_latency`, ...) work on any ``nn.Module``.
"""

from __future__ import annotations

from restorecli.profiling.counting import (
    CONVENTION,
    MacCount,
    ModuleCost,
    ParameterCount,
    breakdown,
    count_macs,
    count_parameters,
    sum_counts,
    tensor_bytes,
    unit_paths,
)
from restorecli.profiling.products import ProductTimer, is_depthwise
from restorecli.profiling.report import (
    DEFAULT_SIZE,
    ProfileReport,
    SizeResult,
    input_shape,
    parse_size,
    parse_sizes,
    profile,
)
from restorecli.profiling.runtime import (
    Latency,
    PeakMemory,
    PeakRequest,
    make_forward,
    measure_cpu_peak,
    measure_cuda_peak,
    measure_latency,
)
from restorecli.profiling.target import ProfileTarget, describe, instantiate, resolve_target, target_from_config

__all__ = [
    "CONVENTION",
    "DEFAULT_SIZE",
    "Latency",
    "MacCount",
    "ModuleCost",
    "ParameterCount",
    "PeakMemory",
    "PeakRequest",
    "ProductTimer",
    "ProfileReport",
    "ProfileTarget",
    "SizeResult",
    "breakdown",
    "count_macs",
    "count_parameters",
    "describe",
    "input_shape",
    "instantiate",
    "is_depthwise",
    "make_forward",
    "measure_cpu_peak",
    "measure_cuda_peak",
    "measure_latency",
    "parse_size",
    "parse_sizes",
    "profile",
    "resolve_target",
    "sum_counts",
    "target_from_config",
    "tensor_bytes",
    "unit_paths",
]
