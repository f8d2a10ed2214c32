"""Export of deployable artifacts. ``runtime`` (onnxruntime) imports no torch; ``onnx`` does."""
