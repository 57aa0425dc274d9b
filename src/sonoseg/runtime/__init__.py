"""Running a model file: ONNX / TorchScript conversion, int8 quantisation and its per-CPU scheme,
backend sessions (torch, onnxruntime fp32 and int8) and the first-use fast-model cache.

Below both ``export`` (which converts and gates a model for shipping) and ``infer`` (which runs one):
neither of those imports the other.
"""
