"""edgepack: calibrate, shrink and export neural networks to int8 .tflite and .onnx for phones and
microcontrollers, and prove them on onnxruntime, LiteRT and TensorFlow Lite Micro."""
from .api import export, load
from .config import ExportConfig
from .errors import EdgepackError
from .report import Report

__version__ = "0.1.0"
__all__ = ["export", "load", "ExportConfig", "Report", "EdgepackError", "__version__"]
