import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tests that train must give the same numbers on every machine: one thread (no core-count- or load-
# dependent reduction order) and deterministic kernels, also in the child processes that examples run in.
# What is left (the CPU's float kernels) is measured by benchmarks/threshold_spread.py.
for _key, _value in (("OMP_NUM_THREADS", "1"), ("TF_NUM_INTRAOP_THREADS", "1"), ("TF_NUM_INTEROP_THREADS", "1"),
                     ("TF_DETERMINISTIC_OPS", "1")):
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session", autouse=True)
def deterministic_torch():
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn digits as NCHW float32 in [0, 1], 8x8: (x_train, y_train, x_test, y_test)."""
    from edgepack.demo import digits_split

    return digits_split(size=8)


@pytest.fixture(scope="session")
def dense_autoencoder(digits):
    """The 10-Dense autoencoder of test_fc_per_channel.py, trained once for the files that read it (the
    tests only export and run it)."""
    from test_fc_per_channel import train_autoencoder

    return train_autoencoder(digits)


_TRAINED = {}


@pytest.fixture(scope="session")
def trained(digits):
    """trained(name) -> a zoo model trained on 8x8 digits (trained once per test session)."""
    import zoo

    def get(name: str):
        if name not in _TRAINED:
            _TRAINED[name] = zoo.trained_on_digits(name, digits)
        return _TRAINED[name]

    return get
