"""The report tokenizer: special ids, vocabulary threshold, the [sentences, words] contract, save / load."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from bundle.data.errors import DataError
from bundle.data.tokenizer import END, PAD, SPECIAL_TOKENS, START, UNK, ReportTokenizer

REPORTS = [
    "The heart size is normal, lungs are clear. No pleural effusion or pneumothorax.",
    "Heart size is normal. Small left pleural effusion (approx. 1.5 cm)! No pneumothorax.",
    "Lungs are clear. The x-ray shows no acute findings.",
]


@pytest.fixture(scope="module")
def tokenizer() -> ReportTokenizer:
    return ReportTokenizer.train(REPORTS * 6, min_count=6)


def test_special_ids_are_fixed(tokenizer: ReportTokenizer) -> None:
    assert (PAD, START, END, UNK) == (0, 1, 2, 3)
    assert [tokenizer.tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert [tokenizer.tokenizer.id_to_token(i) for i in range(4)] == ["<pad>", "<start>", "<end>", "<unk>"]
    # the vocabulary is the distinct words of the reports plus the 4 special tokens
    words = {w for text in REPORTS for s in tokenizer.sentence_words(text) for w in s}
    assert tokenizer.vocab_size == len(words) + 4
    assert set(tokenizer.tokenizer.get_vocab()) == words | set(SPECIAL_TOKENS)


def test_words_lowercase_punctuation_and_final_stop(tokenizer: ReportTokenizer) -> None:
    assert tokenizer.words("The X-ray, approx. 1.5 cm (left)!") == [
        "the",
        "x-ray",
        ",",
        "approx",
        ".",
        "1.5",
        "cm",
        "(",
        "left",
        ")",
    ]
    assert tokenizer.words("Ｈeart normal.") == ["heart", "normal"]  # NFKC folds the full-width letter


def test_round_trip_in_vocabulary(tokenizer: ReportTokenizer) -> None:
    for text in REPORTS:
        ids, count = tokenizer.encode(text, max_sentences=8, max_words=24)
        assert count == len(tokenizer.sentence_words(text))
        assert tokenizer.decode(ids) == tokenizer.normalize(text)
        assert UNK not in ids
    ids, _ = tokenizer.encode(REPORTS[1], 8, 24)
    assert tokenizer.decode(ids) == (
        "heart size is normal. small left pleural effusion (approx. 1.5 cm). no pneumothorax."
    )
    assert tokenizer.decode(torch.as_tensor(ids)) == tokenizer.decode(ids.tolist())


def test_encode_layout(tokenizer: ReportTokenizer) -> None:
    ids, count = tokenizer.encode("Lungs are clear. No pneumothorax.", max_sentences=4, max_words=6)
    assert ids.dtype == np.int64 and ids.shape == (4, 6) and count == 2
    vocab = tokenizer.tokenizer.get_vocab()
    lungs, are, clear, no, ptx = (vocab[w] for w in ("lungs", "are", "clear", "no", "pneumothorax"))
    np.testing.assert_array_equal(ids[0], [lungs, are, clear, END, PAD, PAD])
    np.testing.assert_array_equal(ids[1], [no, ptx, END, PAD, PAD, PAD])
    assert (ids[2:] == PAD).all()


def test_min_count_drops_rare_words() -> None:
    texts = ["heart normal."] * 6 + ["heart enlarged."] * 5
    tokenizer = ReportTokenizer.train(texts, min_count=6)
    vocab = tokenizer.tokenizer.get_vocab()
    assert "normal" in vocab and "heart" in vocab and "enlarged" not in vocab
    ids, _ = tokenizer.encode("Heart enlarged.", 2, 4)
    assert ids[0].tolist() == [vocab["heart"], UNK, END, PAD]
    assert tokenizer.decode(ids) == "heart <unk>."
    assert "enlarged" in ReportTokenizer.train(texts, min_count=5).tokenizer.get_vocab()


def test_truncation_keeps_end_and_drops_sentences(tokenizer: ReportTokenizer) -> None:
    text = "The heart size is normal, lungs are clear. No pneumothorax. Lungs are clear. Heart size is normal."
    ids, count = tokenizer.encode(text, max_sentences=2, max_words=4)
    assert count == 2 and ids.shape == (2, 4)
    assert ids[0, -1] == END and ids[0, :3].tolist() == tokenizer.encode_sentence("The heart size")
    assert tokenizer.decode(ids) == "the heart size. no pneumothorax."


def test_decode_stops_at_empty_row(tokenizer: ReportTokenizer) -> None:
    ids, _ = tokenizer.encode(REPORTS[2], 4, 10)
    ids[1, 0] = END  # a generated report whose second sentence is empty ends there
    assert tokenizer.decode(ids) == "lungs are clear."
    assert tokenizer.decode(np.concatenate([[START], ids[0]])) == "lungs are clear."
    assert tokenizer.decode(np.zeros((3, 5), dtype=np.int64)) == ""
    full, _ = tokenizer.encode(REPORTS[2], 4, 10)
    assert tokenizer.decode(full, num_sentences=1) == "lungs are clear."


def test_save_load_identity(tokenizer: ReportTokenizer, tmp_path) -> None:
    path = tmp_path / "tokenizer.json"
    tokenizer.save(path)
    assert json.loads(path.read_text())["model"]["type"] == "WordLevel"  # the tokenizers library's own format
    loaded = ReportTokenizer.load(path)
    assert loaded.tokenizer.get_vocab() == tokenizer.tokenizer.get_vocab()
    for text in REPORTS + ["An unseen word here."]:
        np.testing.assert_array_equal(loaded.encode(text, 3, 7)[0], tokenizer.encode(text, 3, 7)[0])
    again = pickle.loads(pickle.dumps(tokenizer))  # DataLoader workers receive it pickled
    assert again.encode(REPORTS[0])[0].tolist() == tokenizer.encode(REPORTS[0])[0].tolist()


def test_training_is_deterministic() -> None:
    a = ReportTokenizer.train(REPORTS * 6, min_count=2).tokenizer.get_vocab()
    b = ReportTokenizer.train(list(reversed(REPORTS * 6)), min_count=2).tokenizer.get_vocab()
    assert a == b


def test_load_errors_name_the_file(tmp_path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(DataError, match="missing tokenizer file") as err:
        ReportTokenizer.load(missing)
    assert err.value.path == str(missing)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"model": {"type": "WordLevel", "vocab": ')
    with pytest.raises(DataError, match="corrupt tokenizer file") as err:
        ReportTokenizer.load(corrupt)
    assert err.value.path == str(corrupt)
    # a valid tokenizers file whose special ids differ is not a report tokenizer
    from tokenizers import Tokenizer, models

    other = tmp_path / "other.json"
    Tokenizer(models.WordLevel(vocab={"<unk>": 0, "<pad>": 1}, unk_token="<unk>")).save(str(other))
    with pytest.raises(DataError, match="special token ids") as err:
        ReportTokenizer.load(other)
    assert err.value.path == str(other)


def test_invalid_sizes(tokenizer: ReportTokenizer) -> None:
    with pytest.raises(ValueError):
        tokenizer.encode("Heart normal.", max_sentences=0, max_words=5)
    with pytest.raises(ValueError):
        tokenizer.encode("Heart normal.", max_sentences=2, max_words=1)
    with pytest.raises(ValueError):
        ReportTokenizer.train(REPORTS, min_count=0)
