"""Shared fixtures: every test starts from the same random state, on one CPU thread."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

# Tests use tiny models: one thread avoids OpenMP spin-waiting against pytest-xdist's other worker.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A tiny NAFNet checkpoint in BasicSR's layout (weights under ``params``)."""
    from restorecli.zoo import architectures

    path = tmp_path / "tiny.pth"
    torch.save({"params": architectures.build_model("nafnet", "tiny").state_dict()}, path)
    return path
