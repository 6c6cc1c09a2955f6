"""Prediction: predictors (PyTorch, ONNX Runtime, ensembles), batches with test-time views, open-set scores, CSVs.

Works with a run folder (PyTorch) or an exported `.onnx` model (ONNX Runtime, torch never imported).
"""
