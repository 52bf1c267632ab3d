"""Anything in -> ir.Graph."""
from .onnx import load_onnx

__all__ = ["load_onnx"]
