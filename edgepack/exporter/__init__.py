"""Graph passes and the emitters that write ONNX and TFLite files from the IR."""
