"""Achieved GFLOP/s of the convolutions and matrix products in a real run.

A network's wall time mixes products (compute-bound when wide enough) with element-wise passes and
depthwise convolutions (memory-bound). Timing the products alone says how close they come to the
machine's matrix-multiply peak, which is the efficiency the benchmark reports.

Not ``torch.profiler``: its per-op bookkeeping slows large depthwise convolutions on the CPU enough
to distort the efficiency it reports. :class:`ProductTimer` reads a clock around each product and
nothing else; CPU ops are synchronous, so that is the op's time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

KINDS = ("product", "dense")


def is_depthwise(op: str, args: Sequence[Any]) -> bool:
    """An ``aten.convolution`` whose every output channel reads one input channel of several (weight ``(C, 1, k, k)``).

    Such a 3x3 convolution does 9 multiply-adds per value it reads: it runs at the memory's speed.
    """
    if op != "aten.convolution" or len(args) < 2:
        return False
    source, weight = (getattr(arg, "shape", ()) for arg in args[:2])
    return len(source) == 4 and len(weight) == 4 and source[1] > 1 and weight[1] == 1


class ProductTimer(TorchDispatchMode):
    """Within ``with``, sums the FLOPs (PyTorch's own formulas) and seconds of every product that runs.

    ``product``: every convolution and matrix product; ``dense``: the same without depthwise
    convolutions. Ops without a FLOP formula are decomposed as ``FlopCounterMode`` does (``conv2d``
    into ``convolution``, ``matmul`` into ``bmm``), so each product is timed where its work happens.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flops = dict.fromkeys(KINDS, 0)
        self.seconds = dict.fromkeys(KINDS, 0.0)

    def gflops(self, kind: str) -> float:
        """Achieved GFLOP/s of ``kind`` (0 when nothing of that kind ran)."""
        return self.flops[kind] / self.seconds[kind] / 1e9 if self.seconds[kind] else 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        formula = flop_registry.get(func._overloadpacket)
        if formula is None:
            with self:
                decomposed = func.decompose(*args, **kwargs)
            return func(*args, **kwargs) if decomposed is NotImplemented else decomposed
        start = time.perf_counter()
        out = func(*args, **kwargs)
        seconds = time.perf_counter() - start
        flops = formula(*args, **kwargs, out_val=out)
        for kind in KINDS[:1] if is_depthwise(str(func._overloadpacket), args) else KINDS:
            self.flops[kind] += flops
            self.seconds[kind] += seconds
        return out
