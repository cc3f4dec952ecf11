"""Tests de atelier.anatomie.attention : comparaison à PyTorch et aux modèles de transformers."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import Gemma3TextConfig
from transformers.models.gemma3.modeling_gemma3 import Gemma3RotaryEmbedding
from transformers.models.gemma3.modeling_gemma3 import apply_rotary_pos_emb as hf_apply_rotary

from atelier.anatomie.attention import (
    apply_rotary,
    attention_entropy,
    attention_weights_from_model,
    causal_mask,
    repeat_kv,
    rotary_cos_sin,
    scaled_dot_product_attention,
)


@pytest.mark.parametrize(
    "shape_q, shape_k, d_v",
    [((2, 3, 5, 8), (2, 3, 5, 8), 8), ((1, 1, 7, 4), (1, 1, 7, 4), 6), ((4, 6, 16), (4, 9, 16), 16), ((3, 2), (3, 2), 1)],
)
@pytest.mark.parametrize("mask_kind", [None, "bool", "float"])
def test_sdpa_matches_torch(shape_q, shape_k, d_v, mask_kind):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(shape_q, generator=g, dtype=torch.float64)
    k = torch.randn(shape_k, generator=g, dtype=torch.float64)
    v = torch.randn((*shape_k[:-1], d_v), generator=g, dtype=torch.float64)
    t_q, t_k = shape_q[-2], shape_k[-2]
    mask = None
    if mask_kind is not None:
        mask = torch.rand(t_q, t_k, generator=g) > 0.3
        mask[:, 0] = True  # aucune ligne entièrement masquée
        if mask_kind == "float":
            mask = torch.zeros(t_q, t_k, dtype=torch.float64).masked_fill(~mask, float("-inf"))
    out, w = scaled_dot_product_attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=w.dtype))
    # Poids de référence écrits directement : softmax(q kᵀ / √d)
    scores = q @ k.transpose(-2, -1) / math.sqrt(shape_q[-1])
    if mask_kind == "bool":
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask_kind == "float":
        scores = scores + mask
    torch.testing.assert_close(w, scores.softmax(-1))


def test_sdpa_causal_and_scale_match_torch():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 4, 6, 8, generator=g) for _ in range(3))
    out, w = scaled_dot_product_attention(q, k, v, causal_mask(6))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert torch.all(w.triu(1) == 0), "une position ne doit pas voir le futur"
    out, _ = scaled_dot_product_attention(q, k, v, scale=0.05)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=0.05))


def test_causal_mask_sliding_window():
    m = causal_mask(6, sliding_window=3)
    for i in range(6):
        for j in range(6):
            assert bool(m[i, j]) == (j <= i and i - j < 3)
    assert torch.equal(causal_mask(5), torch.ones(5, 5, dtype=torch.bool).tril())


def test_repeat_kv():
    from transformers.models.gemma3.modeling_gemma3 import repeat_kv as hf_repeat_kv

    x = torch.arange(2 * 2 * 3 * 1.0).view(1, 2, 3, 2)
    y = repeat_kv(x, 3)
    assert y.shape == (1, 6, 3, 2)
    assert torch.equal(y[:, 0], x[:, 0]) and torch.equal(y[:, 2], x[:, 0]) and torch.equal(y[:, 3], x[:, 1])
    assert torch.equal(y, hf_repeat_kv(x, 3))
    assert repeat_kv(x, 1) is x


@pytest.mark.parametrize("theta, head_dim, length", [(10_000.0, 16, 9), (1_000_000.0, 8, 30)])
def test_rope_matches_transformers(theta, head_dim, length):
    cfg = Gemma3TextConfig(
        head_dim=head_dim, hidden_size=32, num_attention_heads=2, num_hidden_layers=1,
        layer_types=["full_attention"], rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": theta}},
    )
    rope = Gemma3RotaryEmbedding(cfg)
    x = torch.randn(2, 3, length, head_dim)
    cos_ref, sin_ref = rope(x, torch.arange(length)[None], "full_attention")
    cos, sin = rotary_cos_sin(length, head_dim, theta)
    torch.testing.assert_close(cos, cos_ref[0])
    torch.testing.assert_close(sin, sin_ref[0])
    q_ref, k_ref = hf_apply_rotary(x, x * 2, cos_ref, sin_ref)
    torch.testing.assert_close(apply_rotary(x, cos, sin), q_ref)
    torch.testing.assert_close(apply_rotary(x * 2, cos, sin), k_ref)


def _tiny_gemma(tiny_models, sliding_window=5):
    model = tiny_models.gemma(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                              head_dim=16, query_pre_attn_scalar=24, sliding_window=sliding_window,
                              max_position_embeddings=64, attn_implementation="eager",
                              layer_types=["sliding_attention", "full_attention"] * 2)
    with torch.no_grad():  # normes non triviales pour que la QK-norm compte vraiment
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0, 0.5)
    return model


MAKERS = {
    "gemma": _tiny_gemma,
    "gpt2": lambda tm: tm.gpt2(n_layer=3, attn_implementation="eager"),
    "llama": lambda tm: tm.llama(num_key_value_heads=1, attn_implementation="eager"),
}


@pytest.mark.parametrize("make", sorted(MAKERS))
@pytest.mark.parametrize("batch, length", [(1, 3), (2, 12)])
def test_attention_weights_from_model_equal_returned_weights(tiny_models, make, batch, length):
    model = MAKERS[make](tiny_models)
    ids = torch.randint(0, 128, (batch, length), generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        returned = model(ids, output_attentions=True).attentions
    for layer in range(len(returned)):
        ours = attention_weights_from_model(model, ids, layer)
        assert ours.shape == returned[layer].shape
        torch.testing.assert_close(ours, returned[layer], atol=1e-6, rtol=1e-5)


def test_sliding_window_layer_really_masks(tiny_models):
    model = _tiny_gemma(tiny_models, sliding_window=3)
    ids = torch.randint(0, 128, (1, 8), generator=torch.Generator().manual_seed(0))
    local = attention_weights_from_model(model, ids, 0)  # couche à fenêtre glissante
    full = attention_weights_from_model(model, ids, 1)  # couche globale
    assert torch.all(local[0, :, 7, :5] == 0) and torch.all(local[0, :, 7, 5:] > 0)
    assert torch.all(full[0, :, 7, :] > 0)
    with torch.no_grad():
        last = model(ids, output_attentions=True).attentions[-1]
    torch.testing.assert_close(attention_weights_from_model(model, ids, -1), last)


def test_attention_entropy():
    t = 5
    uniform = torch.full((2, t, t), 1.0 / t)
    torch.testing.assert_close(attention_entropy(uniform), torch.full((2,), math.log(t)))
    onehot = torch.eye(t)[None]
    torch.testing.assert_close(attention_entropy(onehot), torch.zeros(1))


def test_bad_inputs(tiny_models):
    q = torch.randn(2, 3, 4)
    with pytest.raises(TypeError, match="torch.Tensor"):
        scaled_dot_product_attention([1.0], q, q)
    with pytest.raises(ValueError, match="même dimension"):
        scaled_dot_product_attention(q, torch.randn(2, 3, 5), q)
    with pytest.raises(ValueError, match="même nombre de positions"):
        scaled_dot_product_attention(q, q, torch.randn(2, 4, 4))
    with pytest.raises(ValueError, match="scale"):
        scaled_dot_product_attention(q, q, q, scale=0)
    with pytest.raises(TypeError, match="booléen ou flottant"):
        scaled_dot_product_attention(q, q, q, torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="length"):
        causal_mask(0)
    model = MAKERS["gpt2"](tiny_models)
    ids = torch.randint(0, 128, (1, 4))
    with pytest.raises(ValueError, match="entre 0 et 2"):
        attention_weights_from_model(model, ids, 3)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        attention_weights_from_model(model, ids[0], 0)
    model.config.model_type = "bert"
    with pytest.raises(ValueError, match="non prise en charge"):
        attention_weights_from_model(model, ids, 0)


@pytest.mark.slow
def test_real_causal_lm_attention():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from atelier.assets.models import model_id

    path = model_id("causal_lm")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    ids = tok("Le petit chat dort sur le canapé du salon.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        returned = model(ids, output_attentions=True).attentions
    n = len(returned)
    for layer in sorted({0, 1, n // 2, n - 1}):
        torch.testing.assert_close(attention_weights_from_model(model, ids, layer), returned[layer], atol=1e-5, rtol=1e-4)
