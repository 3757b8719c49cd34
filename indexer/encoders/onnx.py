"""The image tower on ONNX Runtime: exported from the open_clip model once, cached, same embeddings.

``with_onnx_image_tower(encoder, ...)`` returns an encoder whose ``encode_pixels`` (and so
``encode_images`` and indexing) runs an ONNX Runtime session instead of eager torch; texts stay on
torch (their real-length trimming, ``indexer.encoders.text_tower``, is already the larger win there).  The
export is keyed by the weights' fingerprint and the ONNX opset, written atomically under the cache
folder and reused by later runs.  ``int8`` adds a dynamically quantised copy (int8 weights of the
matrix products).  Measured with ``python -m bench encoder-runtime --threads 2`` on this 2-vCPU
machine: ViT-B-32 fp32 1.24-1.26x the images/s of eager torch (cosine 1.0000), int8 2.06x (cosine
0.992); the bundled model 2.3-4.2x.

Without ``onnxruntime`` (or ``onnx``, which the exporter needs) the torch encoder is returned
unchanged and a warning is logged: the runtime is an optimisation, never a requirement.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from indexer.encoders.base import unit_rows
from indexer.encoders.open_clip import OpenClipEncoder
from indexer.errors import ModelError

log = logging.getLogger(__name__)

OPSET = 17
DEFAULT_CACHE = Path("~/.cache/vitrina/onnx")


def onnx_available() -> str | None:
    """None when ONNX Runtime can be used, else why not."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"{exc.name or 'onnxruntime'} is not installed (pip install 'vitrina[onnx]')"
    return None


class OnnxImageEncoder(OpenClipEncoder):
    """An ``OpenClipEncoder`` whose image forward passes run in an ONNX Runtime session."""

    def __init__(self, base: OpenClipEncoder, session: Any, model_path: Path, *, runtime: str):
        super().__init__(base.model, base.preprocess, base.tokenizer, base.identity, batch_size=base.batch_size)
        self.session, self.model_path, self.runtime = session, model_path, runtime
        self._input = session.get_inputs()[0].name

    def encode_pixels(self, pixels: Any) -> np.ndarray:
        array = pixels.detach().cpu().numpy() if hasattr(pixels, "detach") else np.asarray(pixels)
        features = self.session.run(None, {self._input: np.ascontiguousarray(array, dtype=np.float32)})[0]
        return unit_rows(features.astype(np.float32, copy=False))


def with_onnx_image_tower(encoder: OpenClipEncoder, *, cache_dir: str | Path | None = None,
                          threads: int | None = None, int8: bool = False) -> OpenClipEncoder:
    """``encoder`` with its image tower on ONNX Runtime, or ``encoder`` itself when that is unavailable.

    ``int8`` quantises the exported weights of the matrix products to int8 (dynamic quantisation of the
    activations): faster on CPUs, embeddings within cosine ~0.995 of fp32.
    """
    missing = onnx_available()
    if missing:
        log.warning("--runtime onnx: %s; using torch", missing)
        return encoder
    import onnxruntime as ort

    path = export_image_tower(encoder, Path(cache_dir or DEFAULT_CACHE).expanduser())
    if int8:
        path = quantized(path)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's choice
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
        raise ModelError(f"{path}: ONNX Runtime cannot load the exported image tower ({exc}); delete the file to re-export") from exc
    return OnnxImageEncoder(encoder, session, path, runtime="onnx-int8" if int8 else "onnx")


def quantized(path: Path) -> Path:
    """The int8 version of the exported model at ``path`` (made once, beside it)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = path.with_name(path.name.replace(".onnx", "-int8.onnx"))
    if out.is_file():
        return out
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=out.name, suffix=".tmp")
    os.close(handle)
    try:
        root = logging.getLogger()
        was_disabled, root.disabled = root.disabled, True  # the quantiser logs generic advice at WARNING
        try:
            quantize_dynamic(str(path), tmp, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        finally:
            root.disabled = was_disabled
        os.replace(tmp, out)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ModelError(f"cannot quantise {path} to int8: {type(exc).__name__}: {exc}") from exc
    return out


def export_image_tower(encoder: OpenClipEncoder, cache_dir: Path) -> Path:
    """The cached ONNX file of ``encoder``'s image tower (normalised features), exported when missing."""
    import torch

    path = cache_dir / f"{encoder.identity.fingerprint}-image-opset{OPSET}.onnx"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    size = encoder.model.visual.image_size
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    example = torch.zeros(2, 3, *size, device=encoder.device)
    handle, tmp = tempfile.mkstemp(dir=cache_dir, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        # the TorchScript exporter: no onnxscript needed, and it handles open_clip's towers; torch marks it
        # deprecated in favour of torch.export, so its warnings (and tracing notes) are silenced here
        with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():  # grad on: no fused MHA kernel
            warnings.simplefilter("ignore")
            torch.onnx.export(_image_module(encoder.model).eval(), (example,), tmp, input_names=["pixels"],
                              output_names=["features"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}})
        os.replace(tmp, path)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ModelError(f"cannot export {encoder.identity.describe()} to ONNX: {type(exc).__name__}: {exc}") from exc
    log.info("exported the image tower to %s", path)
    return path


def _image_module(model: Any) -> Any:
    """``model.encode_image(x, normalize=True)`` as a module for the exporter (torch imported lazily)."""
    import torch

    class ImageTower(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, pixels: Any) -> Any:
            return self.inner.encode_image(pixels, normalize=True)

    return ImageTower(model)
