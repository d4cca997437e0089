"""Export: static subnet → ONNX (+ int8) with parity checks, measured latency and a model card."""

from hwnas.export.card import build_model_card, load_model_card, make_preprocess, write_model_card
from hwnas.export.int8 import ImageCalibrationReader, quantize_block_int8, quantize_int8
from hwnas.export.onnx import check_onnx, export_onnx, ort_session, read_onnx_metadata
from hwnas.export.parity import ParityResult, check_parity, onnx_accuracy, onnx_logits

__all__ = [
    "build_model_card",
    "load_model_card",
    "make_preprocess",
    "write_model_card",
    "ImageCalibrationReader",
    "quantize_block_int8",
    "quantize_int8",
    "check_onnx",
    "export_onnx",
    "ort_session",
    "read_onnx_metadata",
    "ParityResult",
    "check_parity",
    "onnx_accuracy",
    "onnx_logits",
]
