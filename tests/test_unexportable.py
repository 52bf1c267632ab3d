"""Models edgepack cannot export (beyond the zoo, which exports whole) stop with one line naming the op and
the node, exit code 2, and leave no artifact behind: an op outside the table (CumSum, a lone Erf; LSTM / GRU export now: tests/test_recurrent*.py), a variant
the TFLite emitter cannot write (grouped conv), an unsupported attribute (bicubic Resize)."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgepack.cli import main


class CumSumHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.cumsum(x, dim=1)[:, -1])


class Conv3d(nn.Module):  # grouped 2-D convs export now (tests/test_grouped_conv.py); 3-D convs do not
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 3, padding=1)

    def forward(self, x):
        return self.conv(x).mean((2, 3, 4))


class BicubicUp(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return F.interpolate(self.conv(x), scale_factor=2, mode="bicubic")


class LoneErf(nn.Module):
    def forward(self, x):
        return torch.erf(x) * 2


CASES = [(CumSumHead, (1, 5, 8), "unsupported op 'CumSum' at node '/CumSum'"),
         (Conv3d, (1, 1, 4, 8, 8), "unsupported Conv at node '/conv/Conv': 3-D convolution"),
         (BicubicUp, (1, 4, 8, 8), "unsupported Resize at node '/Resize': mode 'cubic'"),
         (LoneErf, (1, 4, 8, 8), "unsupported op 'Erf' at node '/Erf'")]


@pytest.mark.parametrize("cls, shape, line", CASES, ids=[c[0].__name__ for c in CASES])
def test_one_line_naming_op_and_node_exit_2_nothing_written(cls, shape, line, tmp_path, capsys):
    torch.manual_seed(0)
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's exporter warns about several of these
        torch.onnx.export(cls().eval(), torch.zeros(shape), str(path), dynamo=False, opset_version=17)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((8, *shape[1:]), np.float32))
    out = tmp_path / "out"
    code = main(["export", str(path), "--calib", str(tmp_path / "x.npy"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and line in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())
