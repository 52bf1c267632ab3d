import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def digits():
    """scikit-learn digits as NCHW float32 in [0, 1], 8x8: (x_train, y_train, x_test, y_test)."""
    from edgepack.demo import digits_split

    return digits_split(size=8)


_TRAINED = {}


@pytest.fixture(scope="session")
def trained(digits):
    """trained(name) -> a zoo model trained on 8x8 digits (trained once per test session)."""
    import torch

    import zoo
    from edgepack.demo import train_classifier

    def get(name: str):
        if name not in _TRAINED:
            torch.manual_seed(0)
            model, _ = zoo.build(name)
            _TRAINED[name] = train_classifier(model, digits[0], digits[1], epochs=8, lr=5e-3)
        return _TRAINED[name]

    return get
