"""Old SavedModels: TF2's loader cannot revive a tf.compat.v1 / Keras 2 optimizer's slot variables
('_UserObject' object has no attribute 'add_slot'); edgepack falls back to TensorFlow's v1 loader, freezes
the serving graph, says which loader read the folder, and keeps the load-time code check in force."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

tf = pytest.importorskip("tensorflow")

from edgepack.errors import ModelLoadError  # noqa: E402
from edgepack.frontends.keras import load_keras, loader_note  # noqa: E402
from edgepack.ir.torch_exec import run  # noqa: E402


class _KWS(tf.Module):
    """A small conv + dense scorer trained one step with tf.compat.v1's Momentum optimizer (slot variables)."""

    def __init__(self, write_to=None):
        super().__init__()
        rng = np.random.default_rng(0)
        self.w = tf.Variable(rng.normal(0, 0.3, (3, 3, 1, 4)).astype(np.float32))
        self.b = tf.Variable(rng.normal(0, 0.1, 4).astype(np.float32))
        self.d = tf.Variable(rng.normal(0, 0.3, (4 * 4 * 4, 3)).astype(np.float32))
        self.opt = tf.compat.v1.train.MomentumOptimizer(0.01, 0.9)
        self.write_to = write_to

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)])
    def __call__(self, x):
        if self.write_to:
            tf.io.write_file(self.write_to, "pwned")
        h = tf.nn.relu(tf.nn.conv2d(x, self.w, 2, "SAME") + self.b)
        return {"scores": tf.matmul(tf.reshape(h, [1, -1]), self.d)}


def _save(folder, write_to=None):
    m = _KWS(write_to)
    x = tf.constant(np.random.default_rng(1).uniform(0, 1, (1, 8, 8, 1)).astype(np.float32))
    m.opt.minimize(lambda: tf.reduce_sum(m.__call__.python_function(x)["scores"] ** 2), var_list=[m.w, m.b, m.d])
    tf.saved_model.save(m, str(folder), signatures={"serving_default": m.__call__})
    return m


def test_a_saved_model_with_v1_optimizer_slots_loads_through_the_v1_loader(tmp_path):
    m = _save(tmp_path / "kws")
    with pytest.raises(Exception, match="add_slot"):
        tf.saved_model.load(str(tmp_path / "kws"))  # what a user of TF 2.21 meets
    graph = load_keras(tmp_path / "kws")
    assert "v1 SavedModel loader" in loader_note(tmp_path / "kws") and "add_slot" in loader_note(tmp_path / "kws")
    x = np.random.default_rng(2).uniform(0, 1, (1, 8, 8, 1)).astype(np.float32)
    want = m(tf.constant(x))["scores"].numpy()
    got = run(graph, [x])[graph.outputs[0]]
    np.testing.assert_allclose(got, want, atol=1e-5)  # the trained weights, not the initial ones
    assert graph.inputs == ["x"] and graph.outputs == ["scores"]


def test_the_code_check_still_refuses_what_the_fallback_would_run(tmp_path):
    target = tmp_path / "written_by_the_model.txt"
    _save(tmp_path / "evil", write_to=str(target))
    target.unlink(missing_ok=True)  # tracing the function at save time wrote it once
    with pytest.raises(ModelLoadError, match="WriteFile"):
        load_keras(tmp_path / "evil")
    assert not target.exists()
