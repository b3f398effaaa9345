"""ONNX export of a checkpoint, with a parity check against PyTorch."""
