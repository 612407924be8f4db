"""``EmbeddingDropout``: an ``nn.Embedding`` whose rows (word types) are dropped in training."""

from __future__ import annotations

import torch
from torch import nn

from dropkit._validation import _check_p, _check_scale
from dropkit.functional.embedding_dropout import embedding_dropout
from dropkit.nn._base import _Stochastic
from dropkit.ops import torchscript as _torchscript

__all__ = ["EmbeddingDropout"]


class EmbeddingDropout(_Stochastic, nn.Embedding):
    """A drop-in ``nn.Embedding`` with word-type dropout: whole rows dropped for each batch.

    Training: each row of the embedding matrix is zeroed with probability ``p`` (one draw per forward,
    shared by every occurrence of the word), kept rows scaled by 1/(1-p). Eval: a plain lookup.
    Parameters and ``state_dict`` keys are those of ``nn.Embedding``, so its checkpoints load as they
    are. It derives from ``nn.Embedding`` rather than ``_DropoutNd`` to keep them; ``p`` is validated
    the same way. ``max_norm``, ``scale_grad_by_freq`` and ``sparse`` are refused with an error.

    Paper: Gal & Ghahramani, NeurIPS 2016 (section 4.2); AWD-LSTM (Merity et al., ICLR 2018).

    Args:
        num_embeddings, embedding_dim, padding_idx: as ``nn.Embedding`` (``device``, ``dtype`` and
            ``_weight`` are passed on too).
        p: probability that a row is dropped (keyword only). Default: 0.1
        scale: ``"inverted"`` or ``"classic"`` (keyword only). Default: ``"inverted"``
        generator: optional ``torch.Generator`` for the masks (keyword only).

    Shape:
        - Input: ``(*)`` integer indices. Output: ``(*, embedding_dim)``.

    Example::

        >>> emb = dropkit.nn.EmbeddingDropout(10000, 400, p=0.1)
        >>> out = emb(torch.randint(10000, (35, 8)))
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        *,
        p: float = 0.1,
        scale: str = "inverted",
        generator: torch.Generator | None = None,
        max_norm: float | None = None,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        **kwargs,
    ) -> None:
        op = type(self).__name__
        for name, value, why in (
            ("max_norm", max_norm, "it would renormalise the dropped copy, not the weight"),
            ("scale_grad_by_freq", scale_grad_by_freq, "not implemented"),
            ("sparse", sparse, "the row mask makes the weight gradient dense"),
        ):
            if value not in (None, False):
                raise ValueError(f"{op}: {name} is not supported ({why}), but got {name}={value}")
        super().__init__(num_embeddings, embedding_dim, padding_idx, **kwargs)
        self.p = p
        self.scale = _check_scale(scale, op)
        self.generator = generator

    @classmethod
    def from_embedding(
        cls,
        embedding: nn.Embedding,
        p: float = 0.1,
        *,
        scale: str = "inverted",
        generator: torch.Generator | None = None,
    ) -> EmbeddingDropout:
        """Wrap an existing ``nn.Embedding`` (fastai's ``EmbeddingDropout(emb, embed_p)``): the
        result shares its weight ``Parameter``, ``padding_idx`` and train/eval mode, so optimisers
        and ``state_dict`` keys are unchanged; put it where the embedding was.

        Example::

            >>> model.encoder = dropkit.nn.EmbeddingDropout.from_embedding(model.encoder, p=0.1)
        """
        op = f"{cls.__name__}.from_embedding"
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(
                f"{op}: embedding must be an nn.Embedding, got {type(embedding).__name__}"
            )
        new = cls(
            embedding.num_embeddings,
            embedding.embedding_dim,
            embedding.padding_idx,
            p=p,
            scale=scale,
            generator=generator,
            max_norm=embedding.max_norm,
            scale_grad_by_freq=embedding.scale_grad_by_freq,
            sparse=embedding.sparse,
            device="meta",
        )
        new.weight = embedding.weight  # the same Parameter, not a copy
        new.train(embedding.training)
        return new

    def __setattr__(self, name: str, value: object) -> None:
        if name == "p":
            value = _check_p(value, type(self).__name__)
        super().__setattr__(name, value)

    def extra_repr(self) -> str:
        extra = super().extra_repr() + f", p={self.p}"
        if self.scale != "inverted":
            extra += f", scale={self.scale!r}"
        return extra

    _scriptable = True

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # the plain path in TorchScript (ops/torchscript.py)
            return _torchscript.embedding_dropout(
                input,
                self.weight,
                self.p,
                self.training,
                self.padding_idx,
                self.scale,
                self.generator,
            )
        return embedding_dropout(
            input,
            self.weight,
            self.p,
            self.training,
            padding_idx=self.padding_idx,
            scale=self.scale,
            generator=self.generator,
        )
