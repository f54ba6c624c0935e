"""The ``openvino`` backend: the same ONNX file run by Intel's OpenVINO runtime (PyPI ``openvino``).

OpenVINO reads the ONNX file directly. The model is compiled for a fixed input size (``imgsz``)
with a dynamic batch, one stream, no core pinning (trakr shares the cores with its decoders), and
the precision asked for: ``auto`` is BF16 where the CPU has BF16 instructions (AVX512-BF16, AMX)
and FP32 elsewhere. (The ``openvino`` backend built from config, ``precision: auto``, measures BF16
against FP32 once and runs the faster: on one CPU here BF16 ran 40 ms/frame against FP32's 16;
see :func:`trakr.inference.factory.build_local_detector`.) :attr:`precision` reports what the
compiled model really uses. Pre- and
post-processing are the ones every backend shares (:mod:`trakr.inference.base`), so boxes match
ONNX Runtime's (measured: >= 99 % of them at IoU 0.5 on the sample clip in BF16).

Each thread that calls :meth:`detect` gets its own infer request; a tensor of another square
size (a worker serving clients at several sizes) compiles that size once, on first use.

Example:
    >>> import numpy as np
    >>> det = OpenVinoDetector(imgsz=320, precision="fp32")
    >>> det.backend, det.precision, det.class_names[0]
    ('openvino', 'fp32', 'person')
    >>> len(det.detect([np.zeros((240, 320, 3), np.uint8)])[0])
    0
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

from trakr.inference.base import INT8_METADATA, LocalDetector, class_names_from_metadata, model_file, model_metadata

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16"]
_HINTS = {"fp32": "f32", "bf16": "bf16"}
_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def _import_openvino() -> Any:
    try:
        import openvino
    except ImportError as e:
        raise RuntimeError(
            "detector backend 'openvino' needs the PyPI package 'openvino' (pip install openvino)"
        ) from e
    return openvino


_shared_core: Any = None
_shared_core_lock = threading.Lock()


def shared_core() -> Any:
    """The process's one ``openvino.Core``, never released.

    Releasing the last Core unloads the CPU plugin while its worker threads live on, parked in a
    syscall; a signal later delivered to one of them (SIGTERM from systemd) returns into unmapped
    code and the process dies of SIGSEGV. That is what happened after ``backend: auto`` measured
    OpenVINO and closed it. One Core for the whole process keeps the plugin loaded.
    """
    global _shared_core
    with _shared_core_lock:
        if _shared_core is None:
            _shared_core = _import_openvino().Core()
        return _shared_core


def cpu_has_bf16(core: Any, device: str = "CPU") -> bool:
    """Whether OpenVINO can run BF16 natively on ``device`` (AVX512-BF16 or AMX on Intel CPUs)."""
    return "BF16" in core.get_property(device, "OPTIMIZATION_CAPABILITIES")


class OpenVinoDetector(LocalDetector):
    """Batched in-process inference on OpenVINO; same inputs, outputs and class names as ONNX."""

    backend = "openvino"

    def __init__(
        self,
        model_path: str | Path | None = None,
        imgsz: int = 416,
        confidence: float = 0.35,
        iou: float = 0.5,
        threads: int = 0,
        precision: Precision = "auto",
        device: str = "CPU",
    ):
        ov = _import_openvino()
        self.model_path = model_file(model_path)
        meta = model_metadata(self.model_path)
        super().__init__(class_names_from_metadata(meta), imgsz, confidence, iou)
        self.threads, self.device, self._ov_version = threads, device, ov.get_version().split("-")[0]
        self._core = shared_core()
        self._model = self._core.read_model(str(self.model_path))
        shape = self._model.inputs[0].get_partial_shape()
        if shape.rank.is_static and shape[2].is_static and shape[3].is_static:
            self.imgsz = shape[2].get_length()  # a static export only accepts its own size
        self._fixed_batch = shape[0].get_length() if shape.rank.is_static and shape[0].is_static else None
        if precision == "auto":
            precision = "bf16" if cpu_has_bf16(self._core, device) else "fp32"
        self._config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": _HINTS[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        if device == "CPU":
            self._config["ENABLE_CPU_PINNING"] = False
            if threads:
                self._config["INFERENCE_NUM_THREADS"] = threads
        self._compiled: dict[int, Any] = {}
        self._compile_lock = threading.Lock()
        compiled = self._compiled_for(self.imgsz)
        hint = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # "bf16", "f32"
        self.precision = "int8" if INT8_METADATA in meta else _NAMES.get(hint, hint)

    def _compiled_for(self, size: int) -> Any:
        """The model compiled for ``size`` x ``size`` inputs (dynamic batch), compiled once."""
        compiled = self._compiled.get(size)
        if compiled is None:
            with self._compile_lock:
                compiled = self._compiled.get(size)
                if compiled is None:
                    model = self._model.clone()
                    if size != self.imgsz or not model.inputs[0].get_partial_shape().is_static:
                        model.reshape({model.inputs[0]: [self._fixed_batch or -1, 3, size, size]})
                    compiled = self._core.compile_model(model, self.device, self._config)
                    self._compiled[size] = compiled
        return compiled

    def _request(self, size: int) -> Any:
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        req = requests.get(size)
        if req is None:
            req = requests[size] = self._compiled_for(size).create_infer_request()
        return req

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        if self._fixed_batch and tensor.shape[0] != self._fixed_batch:
            return np.concatenate([self.infer(tensor[i : i + 1]) for i in range(len(tensor))])
        req = self._request(tensor.shape[2])
        req.infer({0: np.ascontiguousarray(tensor)}, share_inputs=True, share_outputs=True)
        return req.get_output_tensor(0).data

    def describe(self) -> str:
        threads = self.threads or os.cpu_count() or 1
        return f"openvino {self._ov_version} on {self.device}, {self.precision}, imgsz {self.imgsz}, {threads} threads"

    def close(self) -> None:
        self._compiled.clear()
