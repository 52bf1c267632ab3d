"""The global-pool form check runs float once for both forms (they compute the same float values) and
hands its float Gemm inputs to the FC weight check: the same measurements as a float run per form."""
import json

import numpy as np

import edgepack
from edgepack.calibration.fc_weights import choose_fc_weights
from edgepack.calibration.pool_form import as_mean, choose_pool_forms
from edgepack.calibration.rewrite_check import int8_output_sqnr

from test_accuracy_budget import SparseGap


def test_one_float_run_scores_both_forms_and_feeds_the_fc_check():
    x = np.random.default_rng(0).random((64, 1, 16, 16), np.float32) * 3
    graph = edgepack.load(SparseGap().eval(), input_shape=(1, 1, 16, 16))
    (pool,) = [n.name for n in graph.nodes if n.op == "GlobalAveragePool"]
    floats: dict = {}
    chosen, (record,) = choose_pool_forms(graph, x, "average_pool", float_values=floats)
    separate = {"average_pool": int8_output_sqnr(graph, x), "mean": int8_output_sqnr(as_mean(graph, {pool}), x)}
    assert record["output_sqnr_db"] == {k: round(v, 2) for k, v in separate.items()}
    assert record["form"] == "mean" and separate["mean"] > separate["average_pool"] + 10
    (gemm,) = [n for n in chosen.nodes if n.op == "Gemm"]
    assert gemm.inputs[0] in floats
    assert choose_fc_weights(chosen, x, float_values=floats).layers == choose_fc_weights(chosen, x).layers


def test_calibration_file_gives_back_a_mean_that_absorbed_its_flatten():
    """A MEAN that absorbed the Flatten after it writes the Flatten's output: calibration.json has no
    tensor for the pool's own output, and reusing the file must still give the MEAN form."""
    from edgepack.calibration.pool_form import forms_from_file

    graph = edgepack.load(SparseGap().eval(), input_shape=(1, 1, 16, 16))
    (pool,) = [n for n in graph.nodes if n.op == "GlobalAveragePool"]
    mean = as_mean(graph, {pool.name})
    (node,) = [n for n in mean.nodes if n.op == "ReduceMean"]
    assert node.attrs["keepdims"] == 0 and pool.outputs[0] not in mean.tensors  # the Flatten was absorbed
    text = json.dumps({"tensors": {pool.inputs[0]: {"scale": 0.2}, node.outputs[0]: {"scale": 0.01}}})
    assert [n.op for n in forms_from_file(graph, text).nodes] == [n.op for n in mean.nodes]
    shared = json.dumps({"tensors": {pool.inputs[0]: {"scale": 0.2}, node.outputs[0]: {"scale": 0.2}}})
    assert "GlobalAveragePool" in [n.op for n in forms_from_file(graph, shared).nodes]
