"""Shared test set-up: offscreen Qt, a small torch thread count, a scratch cache, the artifacts folder."""
import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as main.py: idle torch threads sleep, they don't spin

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"


def pytest_configure(config):
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


@pytest.fixture
def artifacts() -> Path:
    return ARTIFACTS


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def sample_rgb() -> np.ndarray:
    from engine.imageio import load_image

    return load_image(ROOT / "resources" / "samples" / "astronaut.png").rgb
