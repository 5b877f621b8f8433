"""WD14-style ONNX taggers: model registry, hub download and cache, batched inference."""
