"""Parameter and multiply-accumulate counts, in total and per module, three ways.

MACs come from PyTorch's own ``torch.utils.flop_counter.FlopCounterMode``, which counts
convolutions (grouped and depthwise ones by their weight shape ``C_out x C_in/groups x kh x kw``,
transposed ones too), linear layers (``addmm``/``mm``), matrix products (``bmm``, which
``@``/``einsum`` lower to, so Restormer's channel attention is counted) and fused attention
(``scaled_dot_product_attention``). It reports FLOPs as 2 x MACs and ignores bias additions,
element-wise arithmetic, normalisation, softmax, pooling and resampling; we report its count / 2.

Three counts of one pass (:class:`MacCounts`): the architecture's own (the official formulation,
derived from our forward's count with :mod:`restorecli.profiling.formulations` where our forward
regroups it), the papers' convention (the official formulation's convolutions only) and
restorecli's forward as it runs.

The forward pass is run on the ``meta`` device by default (shapes only, no arithmetic), so counting
Restormer at 1024x1024 takes about a second whatever the hardware.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from restorecli.profiling.formulations import CONVOLUTION, OfficialCost, Ops, Shape, official_cost

CONVENTION = (
    "MACs = multiply-accumulates of convolutions (depthwise and grouped included), linear layers and "
    "matrix products (attention's q@k and attn@v included), counted by torch.utils.flop_counter on the "
    "architecture's official formulation; bias additions, element-wise ops, normalisation, softmax, pooling "
    "and resampling are not counted. FLOPs = 2 x MACs. The paper convention counts the official "
    "formulation's convolutions only: most restoration papers' 'FLOPs' column (e.g. Restormer's 140 G at "
    "256x256) is that count of MACs. restorecli's forward computes the same outputs with regrouped products "
    "(Restormer's attention folded into its output projection), so its own count differs."
)
# Rows of the three-way comparison: (key, label, what it counts).
COUNT_KINDS = (
    ("official", "official formulation", "the architecture's own count: convolutions and matrix products"),
    ("paper", "paper convention", "convolutions only, as the papers' tables count"),
    ("restorecli", "restorecli forward", "what restorecli's regrouped forward computes (same outputs)"),
)
ROOT_LABEL = "(top level)"
OWN_SUFFIX = " (own)"
# Containers that are never called themselves: their items are the units a reader thinks in
# (NAFNet's ``encoders.0`` is "encoder level 1"), so they do not add a level to the hierarchy.
_UNCALLED_CONTAINERS = (nn.ModuleList, nn.ModuleDict)
_GLOBAL = "Global"


@dataclass(frozen=True)
class ParameterCount:
    """Parameters of a module, shared tensors counted once."""

    total: int
    trainable: int


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of one forward pass.

    Attributes:
        input_shape: the ``(N, C, H, W)`` the forward pass saw (with tiling, the padded image).
        total: MACs of the whole pass (FLOPs = ``2 * total``).
        by_operator: MACs per ATen operator (``convolution``, ``bmm``, ``addmm``...).
        by_module: MACs each module spends in its own ``forward``, outside its submodules, keyed by
            dotted module name (``""`` is the root); sums to ``total``.
    """

    input_shape: tuple[int, ...]
    total: int
    by_operator: dict[str, int]
    by_module: dict[str, int] = field(repr=False)

    @property
    def flops(self) -> int:
        """FLOPs under the 2-per-MAC convention."""
        return 2 * self.total


@dataclass(frozen=True)
class ModuleCost:
    """One row of a breakdown: a module (or a module's own work) with its parameters and MACs."""

    name: str
    params: int
    macs: int
    params_share: float
    macs_share: float


def count_parameters(module: nn.Module) -> ParameterCount:
    """Total and trainable (``requires_grad``) parameters; works on the meta device."""
    parameters = list(module.parameters())
    return ParameterCount(
        total=sum(p.numel() for p in parameters),
        trainable=sum(p.numel() for p in parameters if p.requires_grad),
    )


def tensor_bytes(module: nn.Module) -> int:
    """Bytes held by parameters and buffers (what the weights cost in memory at their dtype)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class MacCounts:
    """One pass counted as the architecture defines it and as restorecli runs it.

    Attributes:
        official: the official formulation (the architecture's own count, the headline).
        restorecli: restorecli's forward as it runs; equal to ``official`` where nothing is regrouped.
    """

    official: MacCount
    restorecli: MacCount

    @property
    def paper(self) -> int:
        """The papers' convention: MACs of the official formulation's convolutions only."""
        return convolution_macs(self.official)

    def totals(self) -> dict[str, int]:
        """``{"official": ..., "paper": ..., "restorecli": ...}`` in :data:`COUNT_KINDS` order."""
        return {"official": self.official.total, "paper": self.paper, "restorecli": self.restorecli.total}


def convolution_macs(count: MacCount) -> int:
    """MACs of the convolution operators of ``count`` (plain and transposed)."""
    return sum(macs for operator, macs in count.by_operator.items() if CONVOLUTION in operator)


def count_macs(module: nn.Module, input_shape: Sequence[int], *, on_meta: bool = True) -> MacCount:
    """Count the MACs of ``module(x)`` (its own forward, as it runs) for a float32 input of ``input_shape``.

    Args and fallback as in :func:`count_macs_three_ways`.
    """
    return count_macs_three_ways(module, input_shape, on_meta=on_meta).restorecli


def count_macs_three_ways(module: nn.Module, input_shape: Sequence[int], *, on_meta: bool = True) -> MacCounts:
    """Count ``module(x)`` for a float32 input of ``input_shape`` (eval mode assumed): official and own.

    Args:
        module: the network; it is not modified (meta copies of its tensors are swapped in).
        input_shape: ``(N, C, H, W)``, already padded to what the network accepts.
        on_meta: run shapes-only on the meta device. A module that keeps plain tensor attributes
            (not parameters or buffers) may fail there; then the count is repeated with real
            tensors on the module's device, which gives the same numbers, only slower.
    """
    shape = tuple(int(size) for size in input_shape)
    if on_meta:
        try:
            return _count_on(module, shape, torch.device("meta"))
        except (NotImplementedError, RuntimeError):
            pass
    device = next((t.device for t in module.parameters()), torch.device("cpu"))
    return _count_on(module, shape, device)


def _count_on(module: nn.Module, shape: tuple[int, ...], device: torch.device) -> MacCounts:
    tensors = dict(module.named_parameters()) | dict(module.named_buffers())
    if device.type == "meta":
        tensors = {name: torch.empty_like(t, device="meta") for name, t in tensors.items()}
    x = torch.zeros(shape, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), _regrouped_calls(module) as calls, counter:
        functional_call(module, tensors, (x,))
    flops = counter.get_flop_counts()
    root = type(module).__name__
    measured = {
        _relative_name(name, root): {_operator_name(op): count // 2 for op, count in per_op.items()}
        for name, per_op in flops.items()
        if name != _GLOBAL
    }
    official = {name: call.cost(call.module, call.shapes, measured.get(name, {})) for name, call in calls.items()}
    return MacCounts(official=_mac_count(shape, _official(measured, official)), restorecli=_mac_count(shape, measured))


def _operator_name(op: object) -> str:
    return str(op).removeprefix("aten.")


def _mac_count(shape: tuple[int, ...], inclusive_ops: Mapping[str, Mapping[str, int]]) -> MacCount:
    """A MacCount from inclusive MACs per module and operator (``""`` is the root: the whole pass)."""
    inclusive = {name: sum(ops.values()) for name, ops in inclusive_ops.items()}
    return MacCount(
        input_shape=shape,
        total=inclusive.get("", 0),
        by_operator={op: count for op, count in inclusive_ops.get("", {}).items() if count},
        by_module=_exclusive(inclusive),
    )


@dataclass
class _RegroupedCalls:
    """A module whose forward regroups the official computation, its cost rule, and each call's input shape."""

    module: nn.Module
    cost: OfficialCost
    shapes: list[Shape] = field(default_factory=list)


@contextmanager
def _regrouped_calls(module: nn.Module) -> Iterator[dict[str, _RegroupedCalls]]:
    """Within the block, record the input shapes of every regrouped submodule's calls, by dotted name."""
    calls: dict[str, _RegroupedCalls] = {}
    handles = []
    for name, child in module.named_modules():
        cost = official_cost(child)
        if cost is not None:

            def record(called: nn.Module, args: tuple[Any, ...], name: str = name, cost: OfficialCost = cost) -> None:
                calls.setdefault(name, _RegroupedCalls(called, cost)).shapes.append(tuple(args[0].shape))

            handles.append(child.register_forward_pre_hook(record))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _official(measured: Mapping[str, Mapping[str, int]], official: Mapping[str, Ops]) -> dict[str, dict[str, int]]:
    """Inclusive MACs per module and operator with each regrouped module's own count replaced by the official one.

    The difference goes to the module and every counted ancestor up to the root; what its
    submodules counted is folded into it (the official code computes that work differently).
    A module whose official operators and counts equal the measured ones keeps its submodules'
    detail; a regrouped module inside another regrouped one is covered by the outer one's cost.
    """
    result = {name: dict(ops) for name, ops in measured.items()}
    for name, ops in official.items():
        if _nonzero(ops) == _nonzero(measured.get(name, {})) or any(_is_inside(name, other) for other in official):
            continue  # the official code does this module's arithmetic under the same operators
        delta = dict(ops)
        for op, count in measured.get(name, {}).items():
            delta[op] = delta.get(op, 0) - count
        for other in [key for key in result if _is_inside(key, name)]:
            del result[other]
        for ancestor in [name, *(key for key in list(result) if _is_inside(name, key))]:
            entry = result.setdefault(ancestor, {})
            for op, change in delta.items():
                entry[op] = entry.get(op, 0) + change
    return result


def _nonzero(ops: Mapping[str, int]) -> dict[str, int]:
    return {op: count for op, count in ops.items() if count}


def _is_inside(name: str, ancestor: str) -> bool:
    """Whether module ``name`` lies strictly inside ``ancestor`` (``""`` is the root)."""
    return name != ancestor and (ancestor == "" or name.startswith(ancestor + "."))


def sum_counts(counts: Sequence[MacCount], input_shape: Sequence[int]) -> MacCount:
    """Add the counts of several passes (the tiles of one image) into one, for ``input_shape``."""
    by_operator: dict[str, int] = defaultdict(int)
    by_module: dict[str, int] = defaultdict(int)
    for count in counts:
        for name, value in count.by_operator.items():
            by_operator[name] += value
        for name, value in count.by_module.items():
            by_module[name] += value
    return MacCount(
        input_shape=tuple(int(s) for s in input_shape),
        total=sum(count.total for count in counts),
        by_operator=dict(by_operator),
        by_module=dict(by_module),
    )


def _relative_name(tracked: str, root: str) -> str:
    """``Restormer.latent.0`` -> ``latent.0``; the root itself -> ``""``."""
    return "" if tracked == root else tracked.removeprefix(root + ".")


def _exclusive(inclusive: Mapping[str, int]) -> dict[str, int]:
    """Subtract each counted module from its nearest counted ancestor (containers are never counted)."""
    own = dict(inclusive)
    for name, count in inclusive.items():
        if name:
            own[_nearest_ancestor(name, inclusive)] -= count
    return {name: count for name, count in own.items() if count}


def _nearest_ancestor(name: str, known: Mapping[str, int]) -> str:
    parts = name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return ""


def unit_paths(module: nn.Module) -> dict[str, tuple[str, ...]]:
    """Each submodule's position in the hierarchy a reader sees, by dotted name.

    Items of a ModuleList/ModuleDict stay joined to it (``encoders.0`` is one level), because the
    container is never called; items of a Sequential are levels of their own.
    """
    modules = dict(module.named_modules(remove_duplicate=False))
    paths: dict[str, tuple[str, ...]] = {"": ()}
    for name in modules:
        if not name:
            continue
        parent, _, last = name.rpartition(".")
        parent_path = paths[parent]
        if parent_path and isinstance(modules[parent], _UNCALLED_CONTAINERS):
            paths[name] = (*parent_path[:-1], f"{parent_path[-1]}.{last}")
        else:
            paths[name] = (*parent_path, last)
    return paths


def breakdown(module: nn.Module, macs: MacCount, depth: int = 1) -> list[ModuleCost]:
    """Parameters and MACs per module at ``depth`` levels below the root, most MACs first.

    A module shallower than ``depth`` that has submodules also gets an ``"<name> (own)"`` row for
    the work done in its own ``forward`` (Restormer's attention products sit in ``attn (own)`` at
    depth 4); a leaf keeps its plain name. Shares are fractions of the totals, so rows sum to 1.
    """
    modules = dict(module.named_modules(remove_duplicate=False))
    paths = unit_paths(module)

    def label(name: str) -> str:
        path = paths.get(name, ())  # a module built inside forward() is not registered: the root's work
        if len(path) >= depth:
            return ".".join(path[:depth])
        if not path:
            return ROOT_LABEL
        has_children = next(modules[name].children(), None) is not None
        return ".".join(path) + (OWN_SUFFIX if has_children else "")

    params: dict[str, int] = defaultdict(int)
    for name, parameter in module.named_parameters():
        params[label(name.rpartition(".")[0])] += parameter.numel()
    mac_rows: dict[str, int] = defaultdict(int)
    for name, count in macs.by_module.items():
        mac_rows[label(name)] += count
    total_params = sum(params.values())
    rows = [
        ModuleCost(
            name=name,
            params=params.get(name, 0),
            macs=mac_rows.get(name, 0),
            params_share=params.get(name, 0) / total_params if total_params else 0.0,
            macs_share=mac_rows.get(name, 0) / macs.total if macs.total else 0.0,
        )
        for name in {*params, *mac_rows}
    ]
    return sorted(rows, key=lambda row: (-row.macs, -row.params, row.name))
