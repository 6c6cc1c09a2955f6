"""Export of a run (or an ensemble) to ONNX, checked against PyTorch."""
