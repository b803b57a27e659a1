"""Profile a network: parameters, MACs/FLOPs per module, latency, throughput and peak memory.

``restore profile`` is a thin wrapper over :func:`resolve_target` and :func:`profile`; the pieces
(:func:`count_macs`, :func:`count_macs_three_ways`, :func:`breakdown`, :func:`measure_latency`, ...)
work on any ``nn.Module``. :mod:`restorecli.profiling.plot` draws a profile (matplotlib, optional).
"""

from __future__ import annotations

from restorecli.profiling.counting import (
    CONVENTION,
    COUNT_KINDS,
    MacCount,
    MacCounts,
    ModuleCost,
    ParameterCount,
    breakdown,
    convolution_macs,
    count_macs,
    count_macs_three_ways,
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
    free_memory,
    input_shape,
    parse_size,
    parse_sizes,
    profile,
)
from restorecli.profiling.runtime import (
    Latency,
    PeakMemory,
    PeakRequest,
    engine_announcements,
    make_forward,
    measure_cpu_peak,
    measure_cuda_peak,
    measure_latency,
)
from restorecli.profiling.target import (
    ProfileTarget,
    check_config_values,
    instantiate,
    resolve_target,
    target_from_config,
)

__all__ = [
    "CONVENTION",
    "COUNT_KINDS",
    "DEFAULT_SIZE",
    "Latency",
    "MacCount",
    "MacCounts",
    "ModuleCost",
    "ParameterCount",
    "PeakMemory",
    "PeakRequest",
    "ProductTimer",
    "ProfileReport",
    "ProfileTarget",
    "SizeResult",
    "breakdown",
    "check_config_values",
    "convolution_macs",
    "count_macs",
    "count_macs_three_ways",
    "count_parameters",
    "engine_announcements",
    "free_memory",
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
