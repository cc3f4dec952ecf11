"""Tests de atelier.camembert.pretraining : tokeniseur, blocs, configurations jumelles, lots, boucle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from atelier.camembert import pretraining as pt

TEXT = "\n\n".join(
    f"Jean Valjean marchait vers la ville numéro {i}. Cosette l'attendait près de la fontaine ; "
    f"Marius lisait un livre à l’ombre des arbres, et le vent soufflait sur Paris." for i in range(300)
)


@pytest.fixture(scope="module")
def tokenizer():
    return pt.train_tokenizer(TEXT, vocab_size=300)


def test_tokenizer_roundtrip_and_specials(tokenizer):
    assert tokenizer.mask_token == "[MASK]" and tokenizer.pad_token_id == 0
    ids = tokenizer("Cosette l’attendait")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Cosette l'attendait"  # ’ normalisée en '
    with pytest.raises(ValueError):
        pt.train_tokenizer("trop court")
    with pytest.raises(ValueError):
        pt.train_tokenizer(TEXT, vocab_size=10)


def test_blocks(tokenizer):
    blocks = pt.make_blocks(tokenizer, TEXT, seq_len=32)
    assert blocks.shape[1] == 32 and blocks.shape[0] > 10
    assert (blocks[:, 0] == tokenizer.cls_token_id).all() and (blocks[:, -1] == tokenizer.sep_token_id).all()
    inner = blocks[:, 1:-1]
    assert not (inner == tokenizer.pad_token_id).any()
    with pytest.raises(ValueError):
        pt.make_blocks(tokenizer, TEXT, seq_len=4)


def test_configs_are_twins(tokenizer):
    cfgs = pt.encoder_configs(len(tokenizer), seq_len=32, hidden=32, layers=2, heads=2, intermediate=64,
                              position_buckets=8)
    models = {k: pt.build_model(c) for k, c in cfgs.items()}
    n = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    # Seule la table de positions diffère : 34 positions absolues (+1 type) contre 2 × 8 distances (+ LayerNorm).
    assert abs(n["RoBERTa"] - n["DeBERTa-v2"]) < 0.05 * n["RoBERTa"]
    assert type(models["DeBERTa-v2"]).__name__ == "DebertaV2ForMaskedLM"
    assert models["DeBERTa-v2"].deberta.encoder.conv is None
    assert models["DeBERTa-v2"].deberta.embeddings.position_embeddings is None


def test_masked_batches_are_deterministic(tokenizer):
    blocks = pt.make_blocks(tokenizer, TEXT, seq_len=32)
    a = pt.masked_batches(blocks, tokenizer, batch_size=4, seed=3)
    b = pt.masked_batches(blocks, tokenizer, batch_size=4, seed=3)
    c = pt.masked_batches(blocks, tokenizer, batch_size=4, seed=4)
    assert len(a) == blocks.shape[0] // 4
    assert all(torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["labels"], y["labels"]) for x, y in zip(a, b))
    assert not torch.equal(a[0]["labels"], c[0]["labels"])
    lab = torch.cat([x["labels"] for x in a])
    frac = (lab != -100).float().mean().item()
    assert 0.08 < frac < 0.2  # ≈ 15 % des jetons (hors [CLS]/[SEP])
    assert (lab[:, 0] == -100).all() and (lab[:, -1] == -100).all()  # jamais les jetons spéciaux
    with pytest.raises(ValueError):
        pt.masked_batches(blocks, tokenizer, batch_size=0, seed=0)


@pytest.mark.parametrize("arch", ["RoBERTa", "DeBERTa-v2"])
def test_pretrain_lowers_loss(tokenizer, arch):
    torch.manual_seed(0)
    blocks = pt.make_blocks(tokenizer, TEXT, seq_len=32)
    cfg = pt.encoder_configs(len(tokenizer), seq_len=32, hidden=32, layers=2, heads=2, intermediate=64,
                             position_buckets=8)[arch]
    model = pt.build_model(cfg)
    train = pt.masked_batches(blocks[:-8], tokenizer, batch_size=8, seed=0) * 3
    val = pt.masked_batches(blocks[-8:], tokenizer, batch_size=8, seed=1)
    hist = pt.pretrain(model, train, val, lr=3e-3, warmup=2, eval_every=5, progress=False)
    assert hist[0]["step"] == 0 and hist[-1]["step"] == len(train)
    assert hist[-1]["tokens"] == len(train) * 8 * 32
    assert math.isclose(hist[0]["val_loss"], math.log(len(tokenizer)), rel_tol=0.15)  # départ ≈ hasard uniforme
    assert hist[-1]["val_loss"] < hist[0]["val_loss"] - 1.0
    # Perte finale recalculée sans atelier : entropie croisée de torch sur les seuls jetons masqués.
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(**{k: v for k, v in b.items() if k != "labels"}).logits.reshape(-1, len(tokenizer))
                            for b in val])
    labels = torch.cat([b["labels"].reshape(-1) for b in val])
    reference = torch.nn.functional.cross_entropy(logits.float(), labels, ignore_index=-100)
    assert hist[-1]["val_loss"] == pytest.approx(float(reference), rel=1e-4)
    with pytest.raises(ValueError):
        pt.pretrain(model, [], val)


def test_unigram_loss(tokenizer):
    blocks = pt.make_blocks(tokenizer, TEXT, seq_len=32)
    val = pt.masked_batches(blocks[-8:], tokenizer, batch_size=8, seed=1)
    u = pt.unigram_loss(blocks, val, len(tokenizer))
    assert 0 < u < math.log(len(tokenizer))  # mieux que l'uniforme, car les fréquences sont inégales
    # Un exemple calculé à la main : jetons d'entraînement 0, 0, 1, 2 (vocabulaire de 3), lissage +1
    # → comptes 3, 2, 2 sur 7 ; jetons masqués 0 et 1 → perte −(ln 3/7 + ln 2/7) / 2.
    tiny = [{"labels": torch.tensor([[0, -100, 1, -100]])}]
    expected = -(math.log(3 / 7) + math.log(2 / 7)) / 2
    assert pt.unigram_loss(torch.tensor([[0, 0, 1, 2]]), tiny, 3) == pytest.approx(expected)
    empty = [{"labels": torch.full((2, 4), -100)}]
    with pytest.raises(ValueError):
        pt.unigram_loss(blocks, empty, len(tokenizer))


def _twins(tokenizer, **kw):
    cfgs = pt.encoder_configs(len(tokenizer), seq_len=32, hidden=32, layers=2, heads=2, intermediate=64,
                              position_buckets=8, **kw)
    out = {}
    for arch, cfg in cfgs.items():
        torch.manual_seed(0)
        out[arch] = pt.build_model(cfg).eval()
    return out


def test_max_positions_enlarges_only_the_roberta_table(tokenizer):
    small, big = _twins(tokenizer), _twins(tokenizer, max_positions=64)
    emb = lambda m: m.roberta.embeddings.position_embeddings.num_embeddings  # noqa: E731
    # positions pad + 1 … pad + T (numérotation RoBERTa, pad = 0 ici)
    assert emb(small["RoBERTa"]) == 32 + 0 + 1 and emb(big["RoBERTa"]) == 64 + 0 + 1
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(big["DeBERTa-v2"]) == n(small["DeBERTa-v2"])
    assert n(big["RoBERTa"]) - n(small["RoBERTa"]) == 32 * 32
    with pytest.raises(ValueError, match="max_positions"):
        pt.encoder_configs(100, seq_len=32, max_positions=16)


def test_position_ids_match_roberta_default_numbering(tokenizer):
    roberta = _twins(tokenizer)["RoBERTa"]
    ids = torch.randint(5, len(tokenizer), (2, 10))
    emb = roberta.roberta.embeddings
    expected = emb.create_position_ids_from_input_ids(ids, roberta.config.pad_token_id)  # numérotation de transformers
    assert torch.equal(pt.position_ids(roberta, 2, 10), expected)
    assert torch.equal(pt.position_ids(roberta, 2, 10, offset=5), expected + 5)
    with pytest.raises(ValueError, match="offset"):
        pt.position_ids(roberta, 2, 10, offset=-1)


def test_shift_changes_absolute_model_not_relative_one(tokenizer):
    twins = _twins(tokenizer, max_positions=64)
    blocks = pt.make_blocks(tokenizer, TEXT, seq_len=16)[:8]
    batches = pt.masked_batches(blocks, tokenizer, batch_size=4, seed=0)
    deb, rob = twins["DeBERTa-v2"], twins["RoBERTa"]
    assert pt.mlm_loss(deb, batches, offset=16) == pytest.approx(pt.mlm_loss(deb, batches), abs=1e-6)
    assert abs(pt.mlm_loss(rob, batches, offset=16) - pt.mlm_loss(rob, batches)) > 1e-4
    # offset=0 reproduit la numérotation par défaut de RoBERTa (sans position_ids).
    with torch.no_grad():
        default = float(rob(**batches[0]).loss)
        explicit = float(rob(**batches[0], position_ids=pt.position_ids(rob, 4, 16)).loss)
    assert default == pytest.approx(explicit, abs=1e-6)


def test_tokens_to_floor():
    hist = [{"tokens": 0, "val_loss": 9.0}, {"tokens": 100, "val_loss": 7.5}, {"tokens": 200, "val_loss": 6.9},
            {"tokens": 300, "val_loss": 7.1}]
    assert pt.tokens_to_floor(hist, 7.0) == 200
    assert pt.tokens_to_floor(hist, 5.0) is None


def test_article_probe_counts_every_article(tokenizer):
    ids = pt.article_ids(tokenizer, ("le", "la"))
    blocks = pt.make_blocks(tokenizer, TEXT, seq_len=32)[:6]
    model = _twins(tokenizer)["DeBERTa-v2"]
    truth, guess = pt.article_probe(model, blocks, tokenizer, words=("le", "la"), batch_size=4)
    n_articles = int(torch.isin(blocks, torch.tensor(ids)).sum())
    assert len(truth) == len(guess) == n_articles > 0
    expected = [0 if t == ids[0] else 1 for t in blocks[torch.isin(blocks, torch.tensor(ids))].tolist()]
    assert truth.tolist() == expected
    assert set(guess.tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="absents"):
        pt.article_ids(tokenizer, ("xylophone",))


def test_article_probe_probabilities_are_the_restricted_softmax(tokenizer):
    """return_proba : probabilité de l'article juste parmi les seuls articles sondés, cohérente avec l'argmax."""
    blocks = pt.make_blocks(tokenizer, TEXT, seq_len=32)[:6]
    model = _twins(tokenizer)["RoBERTa"]
    words = ("le", "la")
    truth, guess, p = pt.article_probe(model, blocks, tokenizer, words=words, batch_size=4, return_proba=True)
    assert p.shape == truth.shape and ((p > 0) & (p < 1)).all()
    # deux articles : l'article juste est l'argmax exactement quand sa probabilité dépasse 1/2
    np.testing.assert_array_equal(guess == truth, p > 0.5)
    t2, g2 = pt.article_probe(model, blocks, tokenizer, words=words, batch_size=3)
    np.testing.assert_array_equal(t2, truth)
    np.testing.assert_array_equal(g2, guess)
