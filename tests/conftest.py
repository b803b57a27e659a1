"""Shared fixtures: every test starts from the same random state, on one CPU thread."""

from __future__ import annotations

import random

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
