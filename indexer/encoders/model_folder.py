"""Model folders: an open_clip config JSON plus weights, loadable with ``--model DIR``.

The layout is open_clip's own (``open_clip_config.json`` with ``model_cfg`` and
``preprocess_cfg``, weights in ``open_clip_model.safetensors``), so open_clip's
``local-dir:`` loader reads it too.  A ``MODEL_CARD.md`` and ``model_card.json`` may sit beside.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from indexer.encoders.base import CONFIG_FILE

WEIGHTS_FILE = "open_clip_model.safetensors"


def save_model_folder(
    model: Any,
    model_cfg: dict[str, Any],
    out_dir: str | Path,
    *,
    preprocess_cfg: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write ``model``'s weights and config to ``out_dir``; ``half`` stores fp16 weights."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        state[name] = tensor.clone()
    save_file(state, str(out / WEIGHTS_FILE))
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg or default_preprocess_cfg(model_cfg)}
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out


def default_preprocess_cfg(model_cfg: dict[str, Any]) -> dict[str, Any]:
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    size = model_cfg.get("vision_cfg", {}).get("image_size", 224)
    return {
        "size": size,
        "mode": "RGB",
        "mean": list(OPENAI_DATASET_MEAN),
        "std": list(OPENAI_DATASET_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "fill_color": 0,
    }
