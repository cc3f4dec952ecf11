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
    lpft.head_from_probe(model.head, probe)
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
    lpft.head_from_probe(model.head, probe)
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
    with pytest.raises(TypeError):
        lpft.head_from_probe(head, LogisticRegression())
    with pytest.raises(ValueError, match="ajustée"):
        lpft.head_from_probe(head, make_pipeline(StandardScaler(), LogisticRegression()))
    x, y = np.random.default_rng(0).normal(size=(30, 8)), np.arange(30) % 3
    with pytest.raises(ValueError, match="forme"):
        lpft.head_from_probe(head, make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y))
    with pytest.raises(ValueError, match="absents"):
        lpft.restore_state(head, {"inconnu": torch.zeros(1)})
