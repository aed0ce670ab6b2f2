"""Constants shared by the data pipeline and the networks: the special token ids of the report vocabulary.

A leaf module (it imports nothing of the bundle), so the networks can read the token ids without depending on the
data pipeline.
"""

from __future__ import annotations

__all__ = ["END", "PAD", "SPECIAL_TOKENS", "START", "UNK"]

#: Ids of the special tokens, first in every vocabulary.
PAD, START, END, UNK = 0, 1, 2, 3
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<start>", "<end>", "<unk>")
