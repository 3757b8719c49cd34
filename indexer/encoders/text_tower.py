"""Run a CLIP text tower on the batch's real token length instead of the padded context.

open_clip pads every text to ``context_length`` (77 for ViT-B-32) and runs the transformer
over all of it.  With a causal attention mask no real token attends to a later (padding)
position, and pooling reads the end-of-text token, so the padding changes nothing: running
on ``L`` = the batch's longest real length (EOT position + 1) gives the same features for a
fraction of the work.  ``encode_text_trimmed`` reproduces ``CLIP.encode_text`` with
``positional_embedding[:L]`` and ``attn_mask[:L, :L]``; models it cannot handle exactly
(HF / custom text towers, no causal mask, ``last`` pooling) go through ``model.encode_text``.
"""

from __future__ import annotations

from typing import Any

#: Pool types whose result depends only on positions < L (with a causal mask).
_TRIMMABLE_POOLS = frozenset({"argmax", "eos", "first"})


def can_trim(model: Any) -> bool:
    """True when ``model`` has open_clip's built-in causal text tower (``CLIP``-style attributes)."""
    mask = getattr(model, "attn_mask", None)
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    if mask is None or not all(hasattr(model, name) for name in needed):
        return False  # CustomTextCLIP (model.text), or a non-causal tower
    if getattr(model, "text_pool_type", "argmax") not in _TRIMMABLE_POOLS:
        return False
    if getattr(model, "text_pool_type", "argmax") == "eos" and getattr(model, "text_eos_id", None) is None:
        return False
    if getattr(model.transformer, "batch_first", True) is not True:
        return False
    if mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        return False
    import torch

    # A causal mask: nothing on or below the diagonal is masked, everything above is.
    n = mask.shape[0]
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=mask.device), diagonal=1)
    blocked = torch.isneginf(mask) if mask.is_floating_point() else ~mask.bool()
    return bool(torch.equal(blocked, upper))


def real_length(model: Any, tokens: Any) -> int:
    """Positions needed for this batch: the last pooled token's position + 1 (at least 1)."""
    pool = getattr(model, "text_pool_type", "argmax")
    if pool == "first":
        return 1
    if pool == "eos":
        last = (tokens == model.text_eos_id).int().argmax(dim=-1)
    else:
        last = tokens.argmax(dim=-1)
    return int(last.max().item()) + 1 if tokens.shape[0] else 1


def encode_text_trimmed(model: Any, tokens: Any, *, normalize: bool = False) -> Any:
    """``model.encode_text(tokens, normalize)`` computed on the batch's real length."""
    if tokens.dim() != 2 or tokens.shape[0] == 0 or not can_trim(model):
        return model.encode_text(tokens, normalize=normalize)
    import torch
    import torch.nn.functional as F
    from open_clip.transformer import text_global_pool

    length = min(real_length(model, tokens), tokens.shape[1], model.positional_embedding.shape[0])
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    projection = model.text_projection
    if projection is not None:
        x = projection(x) if isinstance(projection, torch.nn.Module) else x @ projection
    return F.normalize(x, dim=-1) if normalize else x
