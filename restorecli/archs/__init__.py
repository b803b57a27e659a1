"""Pure ``nn.Module`` definitions, state-dict compatible with the official releases (no I/O, no registry)."""

from __future__ import annotations

from restorecli.archs.nafnet import NAFNet, NAFNetLocal
from restorecli.archs.restormer import Restormer

__all__ = ["NAFNet", "NAFNetLocal", "Restormer"]
