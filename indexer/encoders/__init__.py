"""Encoders: texts and images to unit vectors of one shared space.

``base`` (the ``Encoder`` protocol, ``ModelIdentity``), ``open_clip`` (the real encoder), ``loading``
(``load_encoder`` from a ``ModelConfig``), ``text_tower`` (the trimmed text forward pass), ``onnx`` (the image
tower on ONNX Runtime), ``model_folder`` (saving a model folder).
"""

from indexer.encoders.base import Encoder, ModelIdentity
from indexer.encoders.loading import load_encoder
from indexer.encoders.open_clip import OpenClipEncoder

__all__ = ["Encoder", "ModelIdentity", "OpenClipEncoder", "load_encoder"]
