"""Word tokenizer for radiology reports: a report <-> a ``[sentences, words]`` array of word ids.

EMIXER's report decoder writes a report sentence by sentence and word by word, so a report becomes a
matrix: one row per sentence (:func:`bundle.data.reports.split_sentences`), each row its word ids, then
``<end>``, then ``<pad>``. The vocabulary is every word seen at least ``min_count`` times in the training
reports (6 in the paper); rarer words become ``<unk>``.

The tokenizer is a HuggingFace ``tokenizers.Tokenizer`` (``WordLevel`` model, NFKC + lower-case
normaliser, whitespace then word/punctuation pre-tokenizer) saved in that library's own ``tokenizer.json``
format. Words keep their inner hyphens, apostrophes, slashes and decimal points ("x-ray", "1.5", "l1/l2");
other punctuation is a token of its own ("," ";" "(" ")"); the sentence-final ".", "!" or "?" is dropped
because the row already marks the sentence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from .constants import END, PAD, SPECIAL_TOKENS, START, UNK  # re-exported: the report tensor contract
from .errors import DataError

__all__ = ["PAD", "START", "END", "UNK", "SPECIAL_TOKENS", "DEFAULT_MIN_COUNT", "ReportTokenizer"]

#: Words seen fewer times than this in the training reports become ``<unk>`` (EMIXER section 4).
DEFAULT_MIN_COUNT = 6

# A special token, a word (inner ' - . / kept: "x-ray", "1.5", "l1/l2", "patient's"), or one punctuation mark.
_WORD_PATTERN = r"<(?:pad|start|end|unk)>|\w+(?:['\-./]\w+)*|[^\w\s]"
_SENTENCE_END_TOKENS = frozenset({".", "!", "?"})
_NO_SPACE_BEFORE = frozenset({",", ".", ";", ":", ")", "]", "%", "!", "?"})
_NO_SPACE_AFTER = frozenset({"(", "["})


def _split_sentences(text: str) -> list[str]:
    from .reports import split_sentences  # imported lazily: the report module is large and optional here

    return split_sentences(text)


def _join_words(words: Sequence[str]) -> str:
    """Readable text from word tokens: no space before closing punctuation or after an opening bracket."""
    out = ""
    for word in words:
        if out and word not in _NO_SPACE_BEFORE and out[-1] not in _NO_SPACE_AFTER:
            out += " "
        out += word
    return out


def _as_sentence(words: Sequence[str]) -> str:
    text = _join_words(words)
    return text if text[-1] in ".!?" else text + "."


def _new_tokenizer(vocab: dict[str, int] | None = None) -> Any:
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel(vocab=vocab or {}, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(_WORD_PATTERN), behavior="isolated")]
    )
    return tokenizer


class ReportTokenizer:
    """Word-level report tokenizer wrapping a ``tokenizers.Tokenizer`` whose special ids are 0-3.

    Build one with :meth:`train` (on the training split's reports) or :meth:`load` (a saved
    ``tokenizer.json``); :meth:`encode` turns a report into the ``[max_sentences, max_words]`` id matrix
    and :meth:`decode` turns such a matrix (real or generated) back into text.
    """

    def __init__(self, tokenizer: Any, source: str | PathLike | None = None) -> None:
        ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
        if ids != [PAD, START, END, UNK]:
            found = dict(zip(SPECIAL_TOKENS, ids))
            raise DataError(source, f"not a report tokenizer: special token ids {found}, expected 0, 1, 2, 3")
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], min_count: int = DEFAULT_MIN_COUNT) -> ReportTokenizer:
        """Learn the vocabulary from report ``texts``: every word seen at least ``min_count`` times."""
        from tokenizers import trainers

        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        tokenizer = _new_tokenizer()
        trainer = trainers.WordLevelTrainer(
            vocab_size=2**31 - 1, min_frequency=min_count, special_tokens=list(SPECIAL_TOKENS), show_progress=False
        )
        words = cls(_new_tokenizer({t: i for i, t in enumerate(SPECIAL_TOKENS)}))
        # the trainer sees exactly the words encode() looks up: one line per sentence, final stop removed
        lines = (" ".join(s) for text in texts for s in words.sentence_words(text))
        tokenizer.train_from_iterator(lines, trainer=trainer)
        return cls(tokenizer)

    def save(self, path: str | PathLike) -> None:
        """Write the tokenizer in the ``tokenizers`` library's ``tokenizer.json`` format."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(path))

    @classmethod
    def load(cls, path: str | PathLike) -> ReportTokenizer:
        """Read a ``tokenizer.json``; raise :class:`DataError` naming ``path`` if missing or not a report tokenizer."""
        from tokenizers import Tokenizer

        if not Path(path).is_file():
            raise DataError(path, "missing tokenizer file")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # the Rust side raises plain Exceptions for any parse failure
            raise DataError(path, f"corrupt tokenizer file: {err}") from err
        return cls(tokenizer, source=path)

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included (the size of the decoder's output layer)."""
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def __len__(self) -> int:
        return self.vocab_size

    def words(self, sentence: str) -> list[str]:
        """Normalised word tokens of one sentence (lower-case, NFKC), without its final stop."""
        normalized = self.tokenizer.normalizer.normalize_str(sentence)
        words = [word for word, _ in self.tokenizer.pre_tokenizer.pre_tokenize_str(normalized)]
        while words and words[-1] in _SENTENCE_END_TOKENS:
            words.pop()
        return words

    def sentence_words(self, report: str) -> list[list[str]]:
        """The report split into sentences (:func:`bundle.data.reports.split_sentences`), each as its words."""
        return [w for w in (self.words(s) for s in _split_sentences(report)) if w]

    def normalize(self, report: str) -> str:
        """The report as :meth:`decode` renders it back: lower-case, one "." per sentence, tidy spacing."""
        return " ".join(_as_sentence(words) for words in self.sentence_words(report))

    def encode_sentence(self, sentence: str) -> list[int]:
        """Word ids of one sentence (no ``<end>``); unknown words are ``<unk>``."""
        return self._ids(self.words(sentence))

    def _ids(self, words: list[str]) -> list[int]:
        if not words:
            return []
        return list(self.tokenizer.encode(words, is_pretokenized=True, add_special_tokens=False).ids)

    def encode(self, report: str, max_sentences: int = 8, max_words: int = 24) -> tuple[np.ndarray, int]:
        """The report as an int64 ``[max_sentences, max_words]`` id matrix and its number of sentences.

        Each row holds one sentence's word ids, then ``<end>``, then ``<pad>``; rows after the last sentence
        are all ``<pad>``. Sentences longer than ``max_words - 1`` words are cut (``<end>`` always fits);
        sentences after ``max_sentences`` are dropped.
        """
        if max_sentences < 1 or max_words < 2:
            raise ValueError(f"need max_sentences >= 1 and max_words >= 2, got {max_sentences} and {max_words}")
        out = np.full((max_sentences, max_words), PAD, dtype=np.int64)
        sentences = self.sentence_words(report)[:max_sentences]
        for row, words in enumerate(sentences):
            ids = self._ids(words)[: max_words - 1]
            out[row, : len(ids)] = ids
            out[row, len(ids)] = END
        return out, len(sentences)

    def decode_sentence(self, ids: Iterable[int]) -> str:
        """Text of one sentence row: words up to the first ``<end>`` / ``<pad>``; ``<start>`` is skipped."""
        return _join_words(self._row_words(ids))

    def _row_words(self, ids: Iterable[int]) -> list[str]:
        words: list[str] = []
        for i in ids:
            i = int(i)
            if i in (END, PAD):
                break
            if i == START:
                continue
            words.append(self.tokenizer.id_to_token(i) or SPECIAL_TOKENS[UNK])
        return words

    def decode(self, ids: Any, num_sentences: int | None = None) -> str:
        """Report text from an id matrix ``[sentences, words]`` (numpy, torch or nested lists).

        Sentences are read row by row until ``num_sentences`` rows or the first row without words (all
        ``<pad>`` or starting with ``<end>``), and joined as "sentence one. sentence two."; out-of-vocabulary
        words read "<unk>". A 1-D input is one sentence.
        """
        if hasattr(ids, "detach"):
            ids = ids.detach().cpu().numpy()
        array = np.asarray(ids)
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2:
            raise ValueError(f"expected ids of shape [sentences, words], got {array.shape}")
        rows = array if num_sentences is None else array[: int(num_sentences)]
        sentences: list[str] = []
        for row in rows:
            words = self._row_words(row)
            if not words:
                break
            sentences.append(_as_sentence(words))
        return " ".join(sentences)
