"""The open_clip encoder: one model, its preprocessing and tokenizer, texts and images to unit vectors.

Every vector that leaves an encoder is float32 and L2-normalised, so inner product is
cosine.  ``Encoder`` is the narrow interface the rest of the code depends on;
``OpenClipEncoder`` is the real one, ``load_encoder`` builds it from a ``ModelConfig``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from indexer.encoders.base import ModelIdentity, unit_rows
from indexer.encoders.text_tower import encode_text_trimmed


class OpenClipEncoder:
    """An open_clip model with its own preprocessing and tokenizer, in eval mode."""

    runtime = "torch"  # what runs the image tower (``indexer.encoders.onnx`` has the other)

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, identity: ModelIdentity, *, batch_size: int = 32):
        import torch

        self._torch = torch
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.identity = identity
        self.batch_size = batch_size
        self.device = next(model.parameters()).device

    @property
    def dim(self) -> int:
        return self.identity.dim

    @property
    def image_size(self) -> int:
        """The shorter side the model's preprocessing resizes photos to (decoders may stop there)."""
        size = getattr(self.model.visual, "image_size", 224)
        return int(min(size) if isinstance(size, (tuple, list)) else size)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for ``texts``, one row each, in order."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start : start + self.batch_size])
            tokens = self.tokenizer(chunk).to(self.device)
            with self._torch.inference_mode():  # on the batch's real token length, not the padded context
                features = encode_text_trimmed(self.model, tokens, normalize=True)
            out[start : start + len(chunk)] = features.float().cpu().numpy()
        return unit_rows(out)

    def preprocess_images(self, images: Sequence[Image.Image]) -> Any:
        """The model's own inference transform, stacked into one tensor."""
        return self._torch.stack([self.preprocess(image) for image in images])

    def encode_pixels(self, pixels: Any) -> np.ndarray:
        """Unit vectors for a preprocessed batch (the output of ``preprocess_images``)."""
        with self._torch.inference_mode():
            features = self.model.encode_image(pixels.to(self.device), normalize=True)
        return unit_rows(features.float().cpu().numpy().astype(np.float32, copy=False))

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Unit vectors for ``images`` (any PIL mode; converted to RGB), one row each."""
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            chunk = [img if img.mode == "RGB" else img.convert("RGB") for img in images[start : start + self.batch_size]]
            out[start : start + len(chunk)] = self.encode_pixels(self.preprocess_images(chunk))
        return out


def weights_fingerprint(model: Any) -> str:
    """A stable hash of a model's weights: names, shapes and a strided sample of values."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1).to(torch.float32).cpu()
        stride = max(1, flat.numel() // 4096)
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(flat[::stride].numpy().tobytes())
    return digest.hexdigest()


def embed_dim(model: Any) -> int:
    import torch

    visual = model.visual
    size = getattr(visual, "image_size", 224)
    size = size if isinstance(size, (tuple, list)) else (size, size)
    with torch.inference_mode():
        probe = model.encode_image(torch.zeros(1, 3, *size, device=next(model.parameters()).device))
    return int(probe.shape[-1])


