"""Static int8 quantization of an exported ONNX model with onnxruntime.quantization (QDQ, per-channel weights).

Activation ranges are calibrated on real training images fed through `ImageCalibrationReader`. The same function
quantizes a single profiling block (`quantize_block_int8`), so an int8 latency table (`cpu-ort-int8-1t`) times exactly
what `hwnas export --int8` ships.

Whether int8 pays off is a per-arch, per-device question: a stock MobileNetV3 can gain clearly from int8 on a CPU
where this space's subnets gain little or even run slower (their HardSwish gates stay float, so every block pays
quantize/dequantize round trips). Callers therefore report fp32 and int8 side by side (measured figures:
bench/results/export.json).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from hwnas.atomic import atomic_path
from hwnas.errors import HwnasError
from hwnas.export.onnx import check_onnx

__all__ = ["ImageCalibrationReader", "cpu_has_vnni", "quantize_int8", "quantize_block_int8", "quantize_onnx_bytes"]

log = logging.getLogger(__name__)


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds preprocessed NCHW float32 batches to the calibrator under the model's input name."""

    def __init__(self, images: np.ndarray, *, input_name: str, batch_size: int = 32) -> None:
        if images.ndim < 2 or len(images) == 0:
            raise HwnasError(f"calibration needs a non-empty batch of inputs, got shape {images.shape}")
        self._images = np.ascontiguousarray(images, dtype=np.float32)
        self._input_name = input_name
        self._batch_size = batch_size
        self._pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= len(self._images):
            return None
        batch = self._images[self._pos : self._pos + self._batch_size]
        self._pos += self._batch_size
        return {self._input_name: batch}

    def rewind(self) -> None:
        self._pos = 0


def cpu_has_vnni() -> bool:
    """u8s8 int8 GEMM on AVX2/AVX-512 without VNNI can saturate; ORT then recommends 7-bit weights (reduce_range)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags or "asimddp" in flags


@contextlib.contextmanager
def _quiet_root_logging() -> Iterator[None]:
    """onnxruntime.quantization logs one root-logger line per shared bias ("Created a copy of bias input ..."), hundreds
    per model; keep them out of the user's progress output while it runs."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


def _input_name(path: Path) -> str:
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    names = [inp.name for inp in graph.input if inp.name not in initializers]
    if len(names) != 1:
        raise HwnasError(f"{path} has {len(names)} inputs; int8 quantization here supports single-input models")
    return names[0]


def quantize_int8(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    calib_images: np.ndarray,
    *,
    per_channel: bool = True,
    reduce_range: bool | None = None,
    batch_size: int = 32,
) -> Path:
    """Quantize the fp32 ONNX model `src` to QDQ int8 at `dst`, calibrated (min/max) on `calib_images`.

    `calib_images` are preprocessed exactly like inference inputs. `reduce_range=None` picks 7-bit weights when the CPU
    lacks VNNI (see `cpu_has_vnni`). The fp32 model's metadata_props are copied, plus ``hwnas.dtype = int8``.
    """
    src_path, dst_path = Path(src), Path(dst)
    if not src_path.is_file():
        raise HwnasError(f"ONNX file {src_path} not found; export the fp32 model first")
    reduce = (not cpu_has_vnni()) if reduce_range is None else reduce_range
    reader = ImageCalibrationReader(np.asarray(calib_images), input_name=_input_name(src_path), batch_size=batch_size)
    with tempfile.TemporaryDirectory(prefix="hwnas-int8-") as tmp_dir:
        prep = Path(tmp_dir) / "prep.onnx"
        raw = Path(tmp_dir) / "int8.onnx"
        # Shape inference + graph optimisation (BN folding etc.) first, as the ORT quantization guide recommends.
        with _quiet_root_logging():
            quant_pre_process(str(src_path), str(prep), skip_symbolic_shape=True)
            quantize_static(
                str(prep),
                str(raw),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        proto = onnx.load(str(raw))
        props = {p.key: p.value for p in onnx.load(str(src_path), load_external_data=False).metadata_props}
        props.update({"hwnas.dtype": "int8", "hwnas.int8": f"qdq per_channel={per_channel} reduce_range={reduce}"})
        onnx.helper.set_model_props(proto, props)
        with atomic_path(dst_path, suffix=".onnx") as out:
            onnx.save(proto, str(out))
            check_onnx(out)
    log.debug(
        "wrote %s (%.1f KiB, fp32 %.1f KiB)", dst_path, dst_path.stat().st_size / 1024, src_path.stat().st_size / 1024
    )
    return dst_path


def quantize_block_int8(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    calib_inputs: np.ndarray | Sequence[np.ndarray],
    *,
    per_channel: bool = True,
) -> Path:
    """Quantize one profiling block's ONNX (static shapes, one input) for an int8 latency table.

    `calib_inputs`: activations the block sees — one array (N, C, H, W) or a sequence of same-shaped arrays, each a
    batch of the block's static input shape. Calibrated on these, the block gets the same QDQ layout as a whole exported
    int8 model, so its timing matches what ships.
    """
    arrays = (
        [np.asarray(calib_inputs)] if isinstance(calib_inputs, np.ndarray) else [np.asarray(a) for a in calib_inputs]
    )
    if not arrays:
        raise HwnasError("quantize_block_int8 needs at least one calibration input")
    # A static-shape block takes exactly its profiled batch; feed one batch per get_next().
    batch = arrays[0].shape[0]
    stacked = np.concatenate(arrays)
    return quantize_int8(src, dst, stacked, per_channel=per_channel, batch_size=batch)


def quantize_onnx_bytes(data: bytes, calib_inputs: np.ndarray, *, per_channel: bool = True) -> bytes:
    """In-memory form of `quantize_block_int8` for latency runners: fp32 ONNX bytes → int8 QDQ ONNX bytes.

    `calib_inputs` has shape (k·batch, C, H, W) for a block exported with a static batch of `batch`; the block's input
    batch is read from the model. This is what an int8 device profile (``dtype: int8``) hands each block before timing it.
    """
    with tempfile.TemporaryDirectory(prefix="hwnas-int8-block-") as tmp_dir:
        src, dst = Path(tmp_dir) / "block.onnx", Path(tmp_dir) / "block.int8.onnx"
        src.write_bytes(data)
        graph = onnx.load_from_string(data).graph
        dim = graph.input[0].type.tensor_type.shape.dim[0]
        batch = dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else 1
        arrays = np.asarray(calib_inputs, dtype=np.float32)
        usable = len(arrays) - len(arrays) % batch
        if usable == 0:
            raise HwnasError(f"int8 calibration needs at least {batch} inputs (the block's batch), got {len(arrays)}")
        quantize_int8(src, dst, arrays[:usable], per_channel=per_channel, batch_size=batch)
        return dst.read_bytes()
