"""Tests de atelier.camembert.lpft : tête moyenne partie de la sonde (LP-FT), pas 0 gardé."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from transformers import BertConfig, BertModel

from atelier.adapters import add_lora
from atelier.camembert import lpft
from atelier.probe import head_from_probe
from atelier.embeddings.pooling import mean_pool


def _encoder() -> BertModel:
    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=64), add_pooling_layer=False).eval()


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 40, (24, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[::3, 6:] = 0  # des paires plus courtes, complétées
    return ids, mask, torch.arange(24) % 3


def test_head_from_probe_reproduces_probe_logits():
    model = lpft.MeanPoolNLI(_encoder())
    ids, mask, labels = _batch()
    with torch.no_grad():
        feats = mean_pool(model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask).numpy()
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000)).fit(feats, labels.numpy())
    head_from_probe(model.head, probe)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
    np.testing.assert_allclose(out.logits.numpy(), probe.decision_function(feats), rtol=1e-4, atol=1e-4)
    assert (out.logits.argmax(-1).numpy() == probe.predict(feats)).all()
    expected = nn.functional.cross_entropy(out.logits, labels)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_step_zero_of_lora_equals_probe_and_restore_state():
    model = lpft.MeanPoolNLI(_encoder())
    ids, mask, labels = _batch(1)
    with torch.no_grad():
        feats = mean_pool(model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask).numpy()
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(feats, labels.numpy())
    head_from_probe(model.head, probe)
    peft_model = add_lora(model, ["query", "value"], task=None, r=2, modules_to_save=["head"]).eval()
    with torch.no_grad():
        start = peft_model(input_ids=ids, attention_mask=mask).logits
    np.testing.assert_allclose(start.numpy(), probe.decision_function(feats), rtol=1e-4, atol=1e-4)  # B = 0 : LoRA neutre
    state = lpft.trainable_state(peft_model)
    assert state and any("lora_" in k for k in state) and any("head" in k for k in state)
    opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.5)
    peft_model.train()
    for _ in range(3):
        opt.zero_grad()
        peft_model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
    peft_model.eval()
    with torch.no_grad():
        moved = peft_model(input_ids=ids, attention_mask=mask).logits
    assert not torch.allclose(moved, start, atol=1e-3)  # l'entraînement a bien changé le modèle
    lpft.restore_state(peft_model, state)
    with torch.no_grad():
        back = peft_model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(back, start)


def test_bad_inputs():
    with pytest.raises(TypeError):
        lpft.MeanPoolNLI("bert")
    with pytest.raises(ValueError):
        lpft.MeanPoolNLI(_encoder(), n_classes=1)
    head = nn.Linear(16, 3)
    with pytest.raises(TypeError, match="LogisticRegression"):
        head_from_probe(head, StandardScaler())
    with pytest.raises(ValueError, match="ajustée"):
        head_from_probe(head, LogisticRegression())
    with pytest.raises(ValueError, match="ajustée"):
        head_from_probe(head, make_pipeline(StandardScaler(), LogisticRegression()))
    x, y = np.random.default_rng(0).normal(size=(30, 8)), np.arange(30) % 3
    with pytest.raises(ValueError, match="forme"):
        head_from_probe(head, make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y))
    with pytest.raises(ValueError, match="absents"):
        lpft.restore_state(head, {"inconnu": torch.zeros(1)})


def _deep_encoder(attn: str = "sdpa") -> BertModel:
    torch.manual_seed(3)
    cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, attn_implementation=attn)
    return BertModel(cfg, add_pooling_layer=False).eval()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("start", [0, 2, 3])
def test_cached_top_layers_equal_full_forward(start, attn):
    """Repartir des vecteurs gardés à l'entrée de la couche ``start`` donne les logits du passage complet."""
    model = lpft.MeanPoolNLI(_deep_encoder(attn), start_layer=start)
    ids, mask, labels = _batch(2)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, labels=labels)
        kept = model.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[start]
        cached = model(hidden_states=kept, attention_mask=mask, labels=labels)
    torch.testing.assert_close(cached.logits, full.logits, rtol=1e-5, atol=1e-5)
    assert cached.loss.item() == pytest.approx(full.loss.item(), rel=1e-5)


def test_pooled_features_keep_layer_and_pad_cached_match_padded_batch():
    """Les vecteurs gardés sans remplissage, recomplétés par pad_cached, redonnent les logits du lot d'origine."""
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers

    from atelier.camembert import nli

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"m{i}" for i in range(36)])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]")
    premises = ["m1 m2 m3", "m4", "m5 m6 m7 m8 m9 m10", "m11 m12"]
    hypotheses = ["m3", "m7 m8 m9", "m1", "m2 m4 m6 m8"]
    encoder = _deep_encoder()
    feats, kept = lpft.pooled_features(encoder, tok, premises, hypotheses, batch_size=3, keep_layer=2)
    assert feats.shape == (4, 16) and [k.shape[0] for k in kept] == [len(tok(p, h)["input_ids"]) for p, h in zip(premises, hypotheses)]
    model = lpft.MeanPoolNLI(encoder, start_layer=2)
    data = lpft.CachedPairs(kept, [0, 1, 2, 0])
    batch = lpft.pad_cached([data[i] for i in range(len(data))])
    assert batch["hidden_states"].shape[:2] == batch["attention_mask"].shape and batch["labels"].tolist() == [0, 1, 2, 0]
    enc = tok(premises, hypotheses, padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        cached = model(hidden_states=batch["hidden_states"], attention_mask=batch["attention_mask"]).logits
        np.testing.assert_allclose(mean_pool(model.top(batch["hidden_states"], batch["attention_mask"]),
                                             batch["attention_mask"]).numpy(), feats, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cached, reference, rtol=1e-4, atol=1e-5)


def test_cached_inputs_refused_clearly():
    with pytest.raises(ValueError, match="start_layer"):
        lpft.MeanPoolNLI(_deep_encoder(), start_layer=4)
    with pytest.raises(ValueError, match="start_layer"):
        lpft.MeanPoolNLI(_deep_encoder())(hidden_states=torch.zeros(1, 3, 16), attention_mask=torch.ones(1, 3))
    with pytest.raises(TypeError, match=r"hidden\[1\]"):
        lpft.CachedPairs([torch.zeros(3, 16), torch.zeros(16)], [0, 1])
    with pytest.raises(ValueError, match="autant"):
        lpft.CachedPairs([torch.zeros(3, 16)], [0, 1])


def test_head_from_bare_logistic_regression_reproduces_its_logits():
    """Sans normalisation (chapitre 05) : W et b recopiés tels quels."""
    x, y = np.random.default_rng(1).normal(size=(60, 16)), np.arange(60) % 4
    probe = LogisticRegression(C=2.0, max_iter=2000).fit(x, y)
    head = head_from_probe(nn.Linear(16, 4), probe)
    with torch.no_grad():
        logits = head(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(logits, probe.decision_function(x), rtol=1e-4, atol=1e-4)
