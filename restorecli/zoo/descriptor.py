"""The typed record the loader hands to the engine (spandrel's ImageModelDescriptor idea).

The engine reads every constraint (channels, padding rule, whether tiles need the whole image) from
this record, never from the architecture's name.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only
    import torch
    from torch import nn

    from restorecli.engine.padding import PadMode


@dataclass
class ModelDescriptor:
    """A loaded network and what the engine must know to run it.

    Attributes:
        module: the network in eval mode, on ``device``; input/output ``(N, C, H, W)`` in ``[0, 1]``.
        name: zoo entry name, or the checkpoint path it came from.
        arch: architecture registry name (``"restormer"``, ``"nafnet"``, ...).
        config: constructor keyword arguments, enough to rebuild the module.
        task: ``"derain"``, ``"deblur"``, ``"denoise"``, ... or None when unknown.
        in_channels / out_channels: 1 grey, 3 RGB, 6 dual-pixel pair.
        pad_multiple / pad_mode: the family's official padding rule (bottom/right).
        channels_last: the architecture runs faster on channels-last inputs (engine default).
        scale: output side / input side (1 for restoration, 2-4 for super-resolution).
        min_size: the smallest input side the network takes; smaller inputs are padded up to it.
        square: the network takes only square inputs (padded to the longer side).
        bytes_per_pixel: activation bytes per input pixel of a forward pass when known in advance (an
            ONNX graph's, estimated on its PyTorch module at export); None: the engine probes the module.
        extra: free-form facts for display (licence, paper score, model card).
        auto_device: the device was chosen by ``auto`` (``load_model``), so the engine may move the
            module to the next device when this one fails (announced); a named device never changes.
        fell_back: the engine has moved the module after a failure; a precision its new device lacks
            then runs as fp32 on every later call (announced once, at the move).
    """

    module: nn.Module
    name: str
    arch: str
    config: dict[str, Any]
    task: str | None
    in_channels: int
    out_channels: int
    pad_multiple: int
    pad_mode: PadMode
    channels_last: bool = False
    scale: int = 1
    min_size: int = 0
    square: bool = False
    bytes_per_pixel: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    auto_device: bool = False
    fell_back: bool = False

    @property
    def device(self) -> torch.device:
        """Where ``module`` lives now, read from its tensors (never kept in sync by hand); CPU without any."""
        return module_device(self.module)


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer; the CPU for a module that holds none."""
    import torch

    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")
