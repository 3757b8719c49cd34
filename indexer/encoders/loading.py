"""Load the encoder a ``ModelConfig`` names (bundled model, open_clip name + weights, hf-hub:, model folder),
failing at once with advice when its weights cannot be had offline."""

from __future__ import annotations

import json
import os
import socket
import urllib.parse
from pathlib import Path
from typing import Any, cast


from indexer.config import ModelConfig
from indexer.encoders.base import CONFIG_FILE, ModelIdentity
from indexer.encoders.onnx import with_onnx_image_tower
from indexer.encoders.open_clip import OpenClipEncoder, embed_dim, weights_fingerprint
from indexer.errors import ModelError


def _bundled_model_dir() -> Path:
    """Where the bundled model is: beside this code when installed, in the repository's data/ in a checkout.

    The repository keeps it in ``data/demo-model``; the wheel and the sdist map that folder onto the
    package ``indexer.bundled`` (setup.py, pyproject.toml), so an installed copy has it at
    ``site-packages/indexer/bundled/demo-model``.
    """
    here = Path(__file__).resolve()
    installed, checkout = here.parents[1] / "bundled" / "demo-model", here.parents[2] / "data" / "demo-model"
    return installed if (installed / CONFIG_FILE).is_file() or not (checkout / CONFIG_FILE).is_file() else checkout


#: The bundled model folder (trained by ``vitrina train``), used when no model is named.
BUNDLED_MODEL_DIR = _bundled_model_dir()


BUNDLED_MODEL_NAME = "vitrina-demo"


#: ``--pretrained random``: random weights, for benchmarks and tests only.
RANDOM_WEIGHTS = "random"


def bundled_model_available() -> bool:
    return (BUNDLED_MODEL_DIR / CONFIG_FILE).is_file()


def resolve_model_name(config: ModelConfig) -> tuple[str, str | None]:
    """Turn the user's (name, pretrained) into what open_clip understands, or explain why not."""
    name, pretrained = config.name, config.pretrained
    if name in (None, "", BUNDLED_MODEL_NAME):
        if pretrained:
            raise ModelError("--pretrained needs --model: name the architecture the weights belong to (e.g. ViT-B-32)")
        if not bundled_model_available():
            raise ModelError(
                f"no model named and the bundled demo model is missing ({BUNDLED_MODEL_DIR}); "
                "pass --model NAME --pretrained TAG|FILE, or --model DIR for a model folder"
            )
        return f"local-dir:{BUNDLED_MODEL_DIR}", None
    if name.startswith("local-dir:") or name.startswith("hf-hub:"):
        return name, None
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ModelError(f"{path}: not a model folder (no {CONFIG_FILE} in it)")
        return f"local-dir:{path.resolve()}", None
    if path.suffix in (".pt", ".pth", ".bin", ".safetensors") or path.is_file():
        raise ModelError(f"{name}: a checkpoint file goes in --pretrained, with its architecture in --model (e.g. --model ViT-B-32 --pretrained {name})")
    import open_clip

    if name not in open_clip.list_models():
        raise ModelError(f"unknown model {name!r}: use an open_clip architecture (see open_clip.list_models()), hf-hub:ORG/REPO or a model folder")
    if pretrained is None:
        tags = ", ".join(tag for model, tag in open_clip.list_pretrained() if model == name) or "none known"
        raise ModelError(
            f"{name} needs weights: pass --pretrained TAG (known: {tags}) or a checkpoint file; "
            f"--pretrained {RANDOM_WEIGHTS} gives random weights (benchmarks only)"
        )
    if pretrained == RANDOM_WEIGHTS:
        return name, None
    if Path(pretrained).expanduser().is_file():
        return name, str(Path(pretrained).expanduser().resolve())
    if not open_clip.get_pretrained_cfg(name, pretrained):
        tags = ", ".join(tag for model, tag in open_clip.list_pretrained() if model == name) or "none known"
        raise ModelError(f"{pretrained!r} is neither a pretrained tag of {name} (known: {tags}) nor a checkpoint file")
    return name, pretrained


def load_encoder(config: ModelConfig, *, batch_size: int = 32) -> OpenClipEncoder:
    """Load the model ``config`` names, or raise ``ModelError`` saying what to do."""
    import open_clip
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    name, pretrained = resolve_model_name(config)
    device = resolve_device(config.device)
    check_weights_reachable(config, name, pretrained)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as exc:  # open_clip raises RuntimeError, ValueError, OSError, hub errors...
        raise ModelError(_load_failure_message(config, name, pretrained, exc)) from exc
    identity = ModelIdentity(
        name=_stored_name(config, name),
        pretrained=config.pretrained if config.pretrained != RANDOM_WEIGHTS else None,
        fingerprint=weights_fingerprint(model),
        dim=embed_dim(model),
    )
    encoder = OpenClipEncoder(model, preprocess, tokenizer, identity, batch_size=batch_size)
    if config.runtime in ("onnx", "onnx-int8"):
        return with_onnx_image_tower(encoder, cache_dir=config.onnx_cache, threads=config.threads,
                                     int8=config.runtime == "onnx-int8")
    return encoder


#: What ``ModelConfig.device`` may name; "auto" takes a CUDA GPU, else Apple's mps, else the CPU.
DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str) -> str:
    """The torch device ``device`` names ("auto", "cpu", "cuda", "cuda:N", "mps"), or ``ModelError`` when torch lacks it."""
    import torch

    device = (device or "auto").strip().lower()
    kind, _, number = device.partition(":")
    if kind not in DEVICES or (number and (kind != "cuda" or not number.isdigit())):
        raise ModelError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if kind == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            build = (f"this torch {torch.__version__} is built without CUDA" if torch.version.cuda is None
                     else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device")
            raise ModelError(f"device {device!r} is not available: {build}; use --device cpu (or auto)")
        if number and int(number) >= torch.cuda.device_count():
            raise ModelError(f"device {device!r} is not available: torch sees {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps" and not has_mps:
        raise ModelError(f"device 'mps' is not available: torch {torch.__version__} sees no Apple GPU (Metal); "
                         "use --device cpu (or auto)")
    return device


def check_weights_reachable(config: ModelConfig, name: str, pretrained: str | None, *, timeout: float = 3.0) -> None:
    """Fail at once, not after minutes of retries, when weights are neither cached nor downloadable."""
    import open_clip

    if name.startswith("hf-hub:"):
        repo, files = name[len("hf-hub:") :], ["open_clip_model.safetensors", "open_clip_pytorch_model.bin", "open_clip_config.json"]
        url = None
    elif pretrained and not Path(pretrained).is_file():
        cfg = open_clip.get_pretrained_cfg(name, pretrained)
        hub = cfg.get("hf_hub", "")
        repo, filename = os.path.split(hub) if hub else ("", "")
        files = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        url = None if hub else cfg.get("url")
    else:
        return
    if repo and _hub_cached(repo.rstrip("/"), files):
        return
    if url and (Path("~/.cache/clip").expanduser() / os.path.basename(url)).is_file():
        return
    what = f"{config.name}" + (f" + {config.pretrained}" if config.pretrained else "")
    advice = (
        "download them once on a machine with network access (they are cached under ~/.cache/huggingface), "
        "or pass a local checkpoint file with --pretrained PATH or a model folder with --model DIR"
    )
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelError(f"cannot load model {what}: its weights are not in the local cache and HF_HUB_OFFLINE=1: {advice}")
    host = urllib.parse.urlsplit(url or _hub_endpoint()).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as exc:
        raise ModelError(f"cannot load model {what}: its weights are not in the local cache and {host} is unreachable ({exc}): {advice}") from None


def _hub_cached(repo: str, files: list[str]) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return any(isinstance(try_to_load_from_cache(repo, f), str) for f in files)


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except ImportError:
        return "https://huggingface.co"


def _stored_name(config: ModelConfig, resolved: str) -> str:
    if config.name in (None, "", BUNDLED_MODEL_NAME):
        return BUNDLED_MODEL_NAME
    if resolved.startswith("local-dir:"):
        return resolved[len("local-dir:") :]
    return config.name or resolved


def _load_failure_message(config: ModelConfig, name: str, pretrained: str | None, exc: Exception) -> str:
    what = f"{config.name or BUNDLED_MODEL_NAME}" + (f" + {config.pretrained}" if config.pretrained else "")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    if name.startswith("hf-hub:") or (pretrained and not Path(pretrained).is_file()):
        hint = (
            "its weights are not in the local cache and could not be downloaded"
            + (" (HF_HUB_OFFLINE=1)" if offline else "")
            + ": download them once on a machine with network access (they are cached under ~/.cache/huggingface), "
            "or pass a local checkpoint file with --pretrained PATH or a model folder with --model DIR"
        )
    else:
        hint = f"{type(exc).__name__}: {exc}"
    return f"cannot load model {what}: {hint}"


def read_model_folder_config(folder: str | Path) -> dict[str, Any]:
    """The open_clip config JSON of a model folder (``model_cfg`` and ``preprocess_cfg``)."""
    path = Path(folder) / CONFIG_FILE
    try:
        return cast("dict[str, Any]", json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read model config ({exc})") from exc
