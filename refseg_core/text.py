"""Tokenisation: CLIP byte-pair encoding (through open_clip) for CRIS, a word vocabulary for LTS.

Both tokenizers are callables ``list[str] -> LongTensor (B, L)`` with padding id 0. By default both refuse
an empty or whitespace-only expression with a ``ValueError`` that names it (``predict`` relies on that).
With ``allow_empty=True`` (what the dataset passes, so one empty sentence in real annotations never stops
a run) an empty expression is tokenised as the official code does: the CLIP tokenizer gives
``[SOT, EOT]`` (official CRIS ``utils/simple_tokenizer.py`` + ``tokenize``: BPE of "" is no token), and the
word vocabulary, for which no official code exists (LTS), gives one ``<unk>`` so that the bi-GRU still
has a step to read.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import torch

from refseg_core.words import split_words


def check_expressions(texts: Sequence[str], allow_empty: bool = False) -> list[str]:
    """Validate a batch of referring expressions; returns them as a list.

    Raises ``TypeError`` for a bare string or a non-string item and, unless ``allow_empty``,
    ``ValueError`` for an empty or whitespace-only expression, naming its position in the batch.
    """
    if isinstance(texts, str):
        raise TypeError("tokenizer expects a list of expressions, got a single string; wrap it in a list")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"expression {i} is {type(t).__name__}, not str: {t!r}")
        if not t.strip() and not allow_empty:
            raise ValueError(f"expression {i} is empty ({t!r}); a referring expression needs words")
    return out


class ClipTokenizer:
    """CLIP BPE tokens of fixed length ``word_len`` (CRIS: 17 for RefCOCO/RefCOCO+, 22 for G-Ref).

    Each row is ``[SOT, bpe..., EOT, 0, ...]``. An expression longer than ``word_len`` is truncated
    and its last kept position is replaced by EOT, as in the official CRIS code, so the sentence
    vector (read at the EOT position, the row's arg-max id) always exists.
    """

    def __init__(self, word_len: int = 17):
        if word_len < 3:
            raise ValueError(f"word_len must be >= 3 (SOT, one word, EOT), got {word_len}")
        from open_clip.tokenizer import SimpleTokenizer

        self.word_len = int(word_len)
        self._bpe = SimpleTokenizer()
        self.sot_id = self._bpe.encoder["<start_of_text>"]
        self.eot_id = self._bpe.encoder["<end_of_text>"]
        self.vocab_size = len(self._bpe.encoder)

    def __call__(self, texts: Sequence[str], *, allow_empty: bool = False) -> torch.LongTensor:
        """``B`` expressions -> ``LongTensor (B, word_len)``; an empty one is ``[SOT, EOT]`` when
        ``allow_empty`` (else ``ValueError``)."""
        texts = check_expressions(texts, allow_empty)
        out = torch.zeros(len(texts), self.word_len, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [self.sot_id] + self._bpe.encode(t) + [self.eot_id]
            if len(ids) > self.word_len:
                ids = ids[: self.word_len]
                ids[-1] = self.eot_id
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, row: torch.Tensor) -> str:
        ids = [int(i) for i in row if int(i) not in (0, self.sot_id, self.eot_id)]
        return self._bpe.decode(ids).strip()

    def state_dict(self) -> dict:
        return {"kind": "clip", "word_len": self.word_len}


class WordVocab:
    """A word vocabulary for LTS's bi-GRU: ids ``0 = <pad>``, ``1 = <unk>``, then words.

    Built from training expressions (:meth:`from_expressions`) and saved with the checkpoint
    (:meth:`state_dict`). Unknown words map to ``<unk>``. Rows are padded with 0 to ``max_len``
    (or to the longest expression of the batch when ``max_len`` is None) and truncated past it.
    """

    PAD, UNK = "<pad>", "<unk>"

    def __init__(self, words: Iterable[str], max_len: int | None = 20):
        self.itos = [self.PAD, self.UNK] + [w for w in dict.fromkeys(words) if w not in (self.PAD, self.UNK)]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.max_len = max_len

    @classmethod
    def from_expressions(
        cls, texts: Iterable[str], min_count: int = 1, max_len: int | None = 20
    ) -> "WordVocab":
        counts = Counter(w for t in texts for w in split_words(t))
        words = sorted(w for w, c in counts.items() if c >= min_count)
        return cls(words, max_len=max_len)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(w, 1) for w in split_words(text)]

    def __call__(self, texts: Sequence[str], *, allow_empty: bool = False) -> torch.LongTensor:
        """``B`` expressions -> ``LongTensor (B, L)``; an empty one is ``[<unk>]`` when ``allow_empty``."""
        texts = check_expressions(texts, allow_empty)
        rows = [self.encode(t) or ([self.stoi[self.UNK]] if allow_empty else []) for t in texts]
        if any(len(r) == 0 for r in rows):
            bad = next(t for t, r in zip(texts, rows) if not r)
            raise ValueError(f"expression {bad!r} has no words")
        length = self.max_len or max(len(r) for r in rows)
        out = torch.zeros(len(rows), length, dtype=torch.long)
        for i, r in enumerate(rows):
            r = r[:length]
            out[i, : len(r)] = torch.tensor(r)
        return out

    def decode(self, row: torch.Tensor) -> str:
        return " ".join(self.itos[int(i)] for i in row if int(i) != 0)

    def state_dict(self) -> dict:
        return {"kind": "words", "itos": list(self.itos), "max_len": self.max_len}

    @classmethod
    def from_state_dict(cls, state: dict) -> "WordVocab":
        itos = state["itos"]
        if itos[:2] != [cls.PAD, cls.UNK]:
            raise ValueError("vocabulary state does not start with <pad>, <unk>")
        return cls(itos[2:], max_len=state.get("max_len"))


def expression_notes(tokenizer, text: str) -> list[str]:
    """What a tokenizer loses of ``text``, as sentences for the user: words outside an LTS vocabulary
    (they become ``<unk>``) and words cut off past the token length. Empty when nothing is lost."""
    notes = []
    if isinstance(tokenizer, WordVocab):
        words = split_words(text)
        unknown = list(dict.fromkeys(w for w in words if w not in tokenizer.stoi))
        if unknown:
            notes.append(
                f"{len(unknown)} word(s) of the expression are not in the model's vocabulary and are read "
                f"as <unk>: {', '.join(unknown)}"
            )
        if tokenizer.max_len is not None and len(words) > tokenizer.max_len:
            notes.append(
                f"the expression has {len(words)} words; only the first {tokenizer.max_len} are read "
                f"(dropped: {' '.join(words[tokenizer.max_len :])})"
            )
    elif isinstance(tokenizer, ClipTokenizer):
        ids = tokenizer._bpe.encode(text)
        room = tokenizer.word_len - 3  # SOT, EOT, and the last kept position that becomes EOT
        if len(ids) + 2 > tokenizer.word_len:
            kept = tokenizer._bpe.decode(ids[: room + 1]).strip()
            notes.append(
                f"the expression is {len(ids)} tokens long; only {tokenizer.word_len} fit (with start "
                f"and end), so it is read as {kept!r}"
            )
    return notes
