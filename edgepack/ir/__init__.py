"""The graph every stage speaks. Imports nothing else of edgepack's."""
from .graph import Graph, GraphError, Node, Tensor, iter_weights, verify
from .ops import OPS, OpSpec, ops_where, per_element, tflite_builtins
from .quant import QuantParams

__all__ = ["Graph", "GraphError", "Node", "Tensor", "verify", "iter_weights", "OPS", "OpSpec", "ops_where",
           "per_element", "tflite_builtins", "QuantParams"]
