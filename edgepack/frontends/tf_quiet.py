"""Importing and running TensorFlow quietly: its C++ start-up messages ignore TF_CPP_MIN_LOG_LEVEL in
TF 2.21 and go straight to file descriptors 1 and 2, so they are captured and logged at debug level."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings

from ..errors import EdgepackError

log = logging.getLogger(__name__)

_NOISY_LOGGERS = ("tensorflow", "absl", "tf2onnx", "keras")


@contextlib.contextmanager
def quiet():
    """Silence TensorFlow/tf2onnx chatter: C++ logs written straight to fd 1/2, Python prints, warnings
    and loggers. What was said is logged at debug level."""
    levels = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    saved, sink = [], tempfile.TemporaryFile(mode="w+b")
    try:
        for fd in (1, 2):
            saved.append(os.dup(fd))
        sys.stdout.flush(), sys.stderr.flush()
        for fd in (1, 2):
            os.dup2(sink.fileno(), fd)
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        for fd, old in zip((1, 2), saved):
            os.dup2(old, fd)
            os.close(old)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        sink.seek(0)
        said = sink.read().decode(errors="replace").strip()
        sink.close()
        if said:
            log.debug("TensorFlow said: %s", said[-2000:])


def import_tf():
    """(tensorflow, keras), imported quietly."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with quiet():
            import keras
            import tensorflow as tf
            import tf2onnx  # noqa: F401  (checked here so that a missing install is one clear line)
    except ImportError as exc:
        raise EdgepackError(f"Keras models need the keras extra ({exc.name} is missing): "
                            "pip install 'edgepack[keras]'") from None
    return tf, keras
