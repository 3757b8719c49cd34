"""The training loop of ``vitrina train``: optimizer, schedule, look-alike batches, the losses
(contrastive image-text, photo-photo, attributes) and the per-epoch validation retrieval."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from indexer.train.data import TEXT_VARIANT_WEIGHTS, Augmentation, TrainData, attribute_vocab, augment, training_text
from indexer.train.config import MAX_LOGIT_SCALE, EpochMetrics, TrainConfig, TrainEvent


class TrainLoop:
    """One training run: optimizer, schedule, epochs, validation."""

    def __init__(self, *, model: Any, tokenizer: Any, data: TrainData, config: TrainConfig,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        import open_clip
        import torch

        self.torch, self.model, self.tokenizer, self.data, self.config = torch, model, tokenizer, data, config
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.loss_fn = open_clip.ClipLoss()
        self.generator = torch.Generator().manual_seed(config.seed)
        self.aug = Augmentation()
        self.variant_weights = torch.tensor(TEXT_VARIANT_WEIGHTS)
        self.vocab = attribute_vocab(data.products) if config.attribute_loss > 0 else None
        decay = [p for n, p in model.named_parameters() if p.requires_grad and not _no_decay(n, p)]
        rest = [p for n, p in model.named_parameters() if p.requires_grad and _no_decay(n, p)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=config.learning_rate, betas=(0.9, 0.98), eps=1e-6)
        self.steps = 0
        self.memory: Any = None  # the last photo embedding of each training product, for hard batches
        self.seen: Any = None

    def _remember(self, positions: list[int], features: Any) -> None:
        if not self.config.hard_groups:
            return
        if self.memory is None:
            n = len(self.train_idx)
            self.memory = self.torch.zeros(n, features.shape[1])
            self.seen = self.torch.zeros(n, dtype=self.torch.bool)
        index = self.torch.tensor(positions)
        self.memory[index] = features.detach().float()
        self.seen[index] = True

    def run(self, train_idx: list[int], val_idx: list[int],
            progress: Callable[[TrainEvent], None] | None) -> list[EpochMetrics]:
        torch, config = self.torch, self.config
        self.train_idx = train_idx
        per_epoch = _steps_per_epoch(len(train_idx), config.batch_size)
        total = per_epoch * config.epochs
        warm = int(total * config.warmup)
        history: list[EpochMetrics] = []
        for epoch in range(1, config.epochs + 1):
            began = time.perf_counter()
            self.model.train()
            losses = []
            if config.hard_groups and self.memory is not None and bool(self.seen.all()):
                order = hard_batch_order(self.memory, config.hard_groups, self.generator)
            else:
                order = torch.randperm(len(train_idx), generator=self.generator).tolist()
            for start in range(0, per_epoch * config.batch_size, config.batch_size):
                positions = order[start:start + config.batch_size]
                lr = _lr_at(self.steps, total, warm, config.learning_rate)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                loss = self._step(positions, [train_idx[i] for i in positions])
                self.steps += 1
                losses.append(loss)
                if progress:
                    progress(TrainEvent(kind="step", epoch=epoch, epochs=config.epochs, step=self.steps,
                                        total_steps=total, loss=loss))
            scores = self.validate(val_idx) if val_idx else {}
            metrics = EpochMetrics(epoch=epoch, loss=sum(losses) / max(1, len(losses)),
                                   seconds=time.perf_counter() - began, **scores)
            history.append(metrics)
            if progress:
                progress(TrainEvent(kind="epoch", epoch=epoch, epochs=config.epochs, step=self.steps,
                                    total_steps=total, loss=metrics.loss, metrics=metrics))
        return history

    def _step(self, positions: list[int], batch: list[int]) -> float:
        torch, g, config = self.torch, self.generator, self.config
        products = [self.data.products[i] for i in batch]
        counts = torch.tensor([len(p.image_rows) for p in products])
        first = (torch.rand(len(batch), generator=g) * counts).long()
        rows = [p.image_rows[k] for p, k in zip(products, first.tolist())]
        if config.image_pairs > 0:  # a second, different photo of each product (the same one if it has one)
            shift = 1 + (torch.rand(len(batch), generator=g) * (counts - 1).clamp(min=1)).long()
            second = torch.where(counts > 1, (first + shift) % counts, first)
            rows += [p.image_rows[k] for p, k in zip(products, second.tolist())]
        pixels = self.data.pixels[rows].float().div_(255.0)
        if config.augment:
            pixels = augment(pixels, generator=g, aug=self.aug)
            variants = torch.multinomial(self.variant_weights, len(batch), replacement=True, generator=g).tolist()
            coins = torch.rand(len(batch), 6, generator=g).tolist()
        else:
            variants, coins = [0] * len(batch), [[0.0] * 6] * len(batch)
        texts = [training_text(p, v, c) for p, v, c in zip(products, variants, coins)]
        image_features = self.model.encode_image((pixels - self.mean) / self.std, normalize=True)
        text_features = self.model.encode_text(self.tokenizer(texts), normalize=True)
        scale = self.model.logit_scale.exp()
        if config.image_pairs > 0:
            a, b = image_features[: len(batch)], image_features[len(batch):]
            loss = 0.5 * (self.loss_fn(a, text_features, scale) + self.loss_fn(b, text_features, scale))
            loss = loss + config.image_pairs * self.loss_fn(a, b, scale)
        else:
            loss = self.loss_fn(image_features, text_features, scale)
        if self.vocab is not None:
            indexed_text = torch.tensor(variants) == 0
            loss = loss + config.attribute_loss * self._attribute_loss(
                batch, image_features[: len(batch)], text_features, indexed_text, scale)
        self._remember(positions, image_features[: len(batch)])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        return float(loss.detach())

    def _attribute_loss(self, batch: list[int], images: Any, texts: Any, indexed_text: Any, scale: Any) -> Any:
        """Cross-entropy of photos (and indexed texts) against the embedded names of each attribute's values."""
        import torch.nn.functional as F

        vocab = self.vocab
        assert vocab is not None  # only called when self.vocab is set (see step)
        names = self.model.encode_text(self.tokenizer(vocab.texts), normalize=True)
        labels = vocab.labels[self.torch.tensor(batch)]
        terms, offset = [], 0
        for col, values in enumerate(vocab.values):
            weights = names[offset:offset + len(values)]
            offset += len(values)
            target = labels[:, col]
            known = target >= 0
            if bool(known.any()):
                terms.append(F.cross_entropy(scale * images[known] @ weights.T, target[known]))
            known_text = known & indexed_text
            if bool(known_text.any()):
                terms.append(F.cross_entropy(scale * texts[known_text] @ weights.T, target[known_text]))
        return sum(terms) / max(1, len(terms))

    def validate(self, val_idx: list[int]) -> dict[str, float | None]:
        """Retrieval among held-out products: text → first photo (R@1, R@10), second photo → first (R@10)."""
        torch = self.torch
        products = [self.data.products[i] for i in val_idx]
        self.model.eval()
        with torch.inference_mode():
            first = self._encode_rows([p.image_rows[0] for p in products])
            texts = self._encode_texts([p.text for p in products])
            second_of = [i for i, p in enumerate(products) if len(p.image_rows) > 1]
            second = self._encode_rows([products[i].image_rows[1] for i in second_of]) if second_of else None
        self.model.train()
        text_r1, text_r10 = _recall(texts @ first.T, list(range(len(products))), (1, 10))
        image_r10 = _recall(second @ first.T, second_of, (10,))[0] if second is not None else None
        return {"text_r1": text_r1, "text_r10": text_r10, "image_r10": image_r10}

    def _encode_rows(self, rows: list[int], chunk: int = 256) -> Any:
        parts = []
        for start in range(0, len(rows), chunk):
            pixels = self.data.pixels[rows[start:start + chunk]].float().div_(255.0)
            parts.append(self.model.encode_image((pixels - self.mean) / self.std, normalize=True))
        return self.torch.cat(parts)

    def _encode_texts(self, texts: list[str], chunk: int = 256) -> Any:
        parts = [self.model.encode_text(self.tokenizer(texts[s:s + chunk]), normalize=True)
                 for s in range(0, len(texts), chunk)]
        return self.torch.cat(parts)


def hard_batch_order(features: Any, group: int, generator: Any) -> list[int]:
    """A visiting order whose consecutive runs of ``group`` rows are near neighbours of each other.

    Seeds are taken in random order; each claims itself and its ``group - 1`` most similar unclaimed rows.
    Batches cut from this order mix a few such groups, so their negatives differ in detail, not just colour.
    """
    import torch

    sims = features @ features.T
    free = torch.ones(len(features), dtype=torch.bool)
    order: list[int] = []
    for seed in torch.randperm(len(features), generator=generator).tolist():
        if not free[seed]:
            continue
        row = sims[seed].masked_fill(~free, float("-inf"))
        row[seed] = float("inf")
        take = torch.topk(row, min(group, int(free.sum()))).indices
        free[take] = False
        order.extend(take.tolist())
    return order


def _recall(scores: Any, targets: list[int], ks: tuple[int, ...]) -> list[float]:
    """Fraction of query rows whose target column ranks within the top k (ties count against)."""
    import torch

    target_scores = scores[torch.arange(len(targets)), torch.tensor(targets)]
    ranks = (scores > target_scores[:, None]).sum(dim=1)
    return [float((ranks < k).float().mean()) for k in ks]


def _steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches, plus the last partial one when it holds at least 2 products."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 else 0)


def _lr_at(step: int, total: int, warm: int, base: float) -> float:
    if step < warm:
        return base * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


def _no_decay(name: str, param: Any) -> bool:
    return param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
