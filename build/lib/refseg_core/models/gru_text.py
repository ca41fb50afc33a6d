"""LTS's text encoder: word embeddings (optionally GloVe-initialised) and a bidirectional GRU
(Jing et al., CVPR 2021, Sec. 3.1).

``GRUTextEncoder(tokens (B, L)) -> (words (B, L, 2H), sentence (B, 2H), valid (B, L) bool)``.

Padding (id 0) never changes the result: the GRU runs on a packed sequence, so a row's states depend
only on its own words, whatever the padded length ``L``; word states at padded positions are zero.
The sentence vector is the concatenation of the forward GRU's last state (after the last word) and
the backward GRU's last state (after the first word) - the usual bi-GRU sentence summary.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def load_glove(path: str | os.PathLike, itos: Sequence[str], dim: int) -> tuple[torch.Tensor, int]:
    """Read a GloVe text file (``word v1 ... v_dim`` per line, optionally ``.gz``) for a vocabulary.

    Returns ``(vectors (len(itos), dim), found)``: rows of words present in the file hold their GloVe
    vector, the others are NaN (the caller keeps its own initialisation there); ``found`` counts the
    words found. Only the vocabulary's words are kept, so a 2 GB file costs one pass and little memory.
    Raises ``FileNotFoundError`` / ``ValueError`` naming the file (and the line for a malformed one).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GloVe file not found: {path!r} (glove_path)")
    index = {w: i for i, w in enumerate(itos)}
    out = torch.full((len(itos), dim), float("nan"))
    found = 0
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if len(parts) < 2:
                continue  # blank line
            word, values = parts[0], parts[1:]
            if len(values) != dim:
                raise ValueError(
                    f"{path}:{lineno}: word {word!r} has {len(values)} values, expected embed_dim={dim}"
                )
            i = index.get(word)
            if i is None or not torch.isnan(out[i, 0]):
                continue  # not in the vocabulary, or a duplicate (first one wins)
            try:
                out[i] = torch.tensor([float(v) for v in values])
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: non-numeric value for word {word!r}") from exc
            found += 1
    return out, found


class GRUTextEncoder(nn.Module):
    """Word embeddings + bi-GRU.

    Args:
        vocab_size: number of token ids (id 0 is padding, its embedding stays zero).
        embed_dim: word-embedding width (300 for GloVe 840B/6B-300d).
        hidden: GRU hidden size per direction; outputs are ``2 * hidden`` wide (``self.out_dim``).
        num_layers, dropout: GRU depth and the dropout between its layers (and on the embeddings).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 300,
        hidden: int = 256,
        num_layers: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.gru = nn.GRU(
            embed_dim,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.out_dim = 2 * hidden

    def init_from_glove(self, path: str | os.PathLike, itos: Sequence[str]) -> int:
        """Copy GloVe vectors into the embedding rows of ``itos`` words found in ``path``; returns the
        number found. Rows of unknown words keep their random initialisation; padding stays zero."""
        if len(itos) != self.embed.num_embeddings:
            raise ValueError(
                f"vocabulary has {len(itos)} words, embedding has {self.embed.num_embeddings} rows"
            )
        vectors, found = load_glove(path, itos, self.embed.embedding_dim)
        with torch.no_grad():
            hit = ~torch.isnan(vectors[:, 0])
            hit[0] = False  # padding row stays zero
            self.embed.weight[hit] = vectors[hit]
        return found

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``tokens (B, L)`` long, words first then zeros -> ``(words (B, L, 2H), sentence (B, 2H),
        valid (B, L) bool)``."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (B, L), got shape {tuple(tokens.shape)}")
        valid = tokens != 0
        lengths = valid.sum(1)
        if bool((lengths == 0).any()):
            row = int((lengths == 0).nonzero()[0])
            raise ValueError(f"tokens row {row} is all padding (an empty expression)")
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        if not bool((valid == (positions < lengths[:, None])).all()):
            raise ValueError(
                "tokens must hold the words first and padding (id 0) only at the end of each row"
            )
        if int(tokens.max()) >= self.embed.num_embeddings or int(tokens.min()) < 0:
            raise ValueError(
                f"token ids must lie in [0, {self.embed.num_embeddings}), got max {int(tokens.max())}"
            )
        x = self.drop(self.embed(tokens))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = self.gru(packed)
        words, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
        # h_n: (layers * 2, B, H); the last layer's forward and backward final states.
        sentence = torch.cat([h_n[-2], h_n[-1]], dim=1)
        return words, sentence, valid
