"""edgepack: calibrate, shrink and export neural networks to int8 .tflite and .onnx for phones and
microcontrollers, and prove them on onnxruntime, LiteRT and TensorFlow Lite Micro."""
from .api import export, inspect, lint, list_targets, load, load_target, validate
from .config import ExportConfig
from .errors import EdgepackError
from .report import Report
from .targets.profile import TargetProfile as Target

__version__ = "0.1.0"
__all__ = ["export", "load", "validate", "lint", "inspect", "list_targets", "load_target", "Target",
           "ExportConfig", "Report", "EdgepackError", "__version__"]
