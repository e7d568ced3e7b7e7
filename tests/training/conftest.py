"""Fixtures for the training tests: quiet TF/JAX logs and shared seeded weights.

TF reads TF_CPP_MIN_LOG_LEVEL once, at its import; nothing imported here imports TF, and test
modules import it only inside tests, so setting it at conftest import time is early enough.
"""

import os

import numpy as np
import pytest

from shared.models import TINY

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TINY_CLASSES = 5


@pytest.fixture(scope="session")
def tiny_state() -> dict[str, np.ndarray]:
    """TINY, 5 classes, random BN statistics/affine (see training.parity.random_state_dict)."""
    from training.parity import random_state_dict

    return random_state_dict(TINY, TINY_CLASSES, seed=0)
