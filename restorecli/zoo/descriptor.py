"""The typed record the loader hands to the engine (spandrel's ImageModelDescriptor idea).

The engine reads every constraint (channels, padding rule, whether tiles need the whole image) from
this record, never from the architecture's name.
"""

from __future__ import annotations

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
        local: True when an output pixel depends only on a bounded neighbourhood (pure convolutions),
            so tiling with a margin is exact; False for global operators (attention, global pooling).
        device: where ``module`` lives now; the engine updates it on fallback.
        channels_last: the architecture runs faster on channels-last inputs (engine default).
        extra: free-form facts for display (licence, paper score, model card).
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
    local: bool
    device: torch.device
    channels_last: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
