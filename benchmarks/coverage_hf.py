"""Coverage corpus, `transformers` part: vision/audio models built from small configs (random weights),
written as ONNX (torch.onnx.export, TorchScript exporter, opset 17) for benchmarks/coverage.py to feed to
edgepack. Runs in a venv that has `transformers` (it is not a dependency of edgepack), e.g.

    python3.11 -m venv /work/venv-hf && /work/venv-hf/bin/pip install "torch==2.13.*" transformers onnx
    /work/venv-hf/bin/python benchmarks/coverage_hf.py --out /tmp/hf_onnx [--only MobileViT]

Writes NAME.onnx and index.json ({NAME: {"input": shape, "params": n}} or {"reason": ...}).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


# name -> input shape (batch 1); benchmarks/coverage.py reads this without importing transformers
HF_INPUTS = {"hf-MobileViT": (1, 3, 64, 64), "hf-ConvNext": (1, 3, 64, 64), "hf-ResNet": (1, 3, 64, 64),
             "hf-MobileNetV2": (1, 3, 64, 64), "hf-ViT": (1, 3, 32, 32), "hf-Wav2Vec2-frontend": (1, 8000),
             "hf-Wav2Vec2-KWS": (1, 8000)}


def _configs(tf):  # tf: the transformers module
    vit = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, num_labels=10)
    wav = dict(conv_dim=(32,) * 7, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=128, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
               num_labels=10)
    return {
        "hf-MobileViT": (lambda: tf.MobileViTForImageClassification(tf.MobileViTConfig(
            image_size=64, hidden_sizes=[32, 40, 48], neck_hidden_sizes=[8, 16, 24, 32, 40, 48, 64],
            num_labels=10))),
        "hf-ConvNext": (lambda: tf.ConvNextForImageClassification(tf.ConvNextConfig(
            depths=[1, 1, 2, 1], hidden_sizes=[16, 32, 64, 128], num_labels=10))),
        "hf-ResNet": (lambda: tf.ResNetForImageClassification(tf.ResNetConfig(
            embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=10))),
        "hf-MobileNetV2": (lambda: tf.MobileNetV2ForImageClassification(tf.MobileNetV2Config(
            image_size=64, depth_multiplier=0.5, num_labels=10))),
        "hf-ViT": (lambda: tf.ViTForImageClassification(tf.ViTConfig(image_size=32, patch_size=8, **vit))),
        "hf-Wav2Vec2-frontend": (lambda: tf.Wav2Vec2Model(tf.Wav2Vec2Config(**wav)).feature_extractor),
        "hf-Wav2Vec2-KWS": (lambda: tf.Wav2Vec2ForSequenceClassification(tf.Wav2Vec2Config(**wav))),
    }


def _torch_init(model):
    """PyTorch's default init (transformers draws N(0, 0.02), under which activations vanish with depth and
    the outputs are near constant: an SQNR of such an output says nothing)."""
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


def _first_output(torch, model):
    class FirstOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            y = self.inner(x)
            return y if isinstance(y, torch.Tensor) else y[0]

    return FirstOutput().eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    import torch
    import transformers

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    index = {}
    for name, build in _configs(transformers).items():
        if args.only and name not in args.only:
            continue
        shape = HF_INPUTS[name]
        torch.manual_seed(0)
        try:
            model = _first_output(torch, _torch_init(build()))
            x = torch.randn(*shape)
            torch.onnx.export(model, (x,), str(out / f"{name}.onnx"), input_names=["input"],
                              opset_version=17, dynamo=False)
            index[name] = {"input": list(shape), "params": sum(p.numel() for p in model.parameters()),
                           "transformers": transformers.__version__}
        except Exception as exc:  # the one-line reason is the result
            index[name] = {"input": list(shape), "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
        print(name, index[name], flush=True)
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
