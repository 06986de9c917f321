"""Export: ONNX at fp32/fp16/int8, parity checks, TensorRT engines, zoo packaging."""

FP32_TOLERANCE = 1e-3
"""Largest accepted |PyTorch - ONNX Runtime| output difference of an FP32 export."""
