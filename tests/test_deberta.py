"""Tests de atelier.camembert.deberta : égalité avec DebertaV2 de transformers."""

from __future__ import annotations

import pytest
import torch
from transformers import DebertaV2Config
from transformers.models.deberta_v2 import modeling_deberta_v2 as hf

from atelier.camembert.deberta import DisentangledSelfAttention, log_bucket_position, relative_positions
from atelier.camembert import deberta


def _config(**kw) -> DebertaV2Config:
    base = dict(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        relative_attention=True,
        position_buckets=-1,
        max_relative_positions=-1,
        pos_att_type="c2p|p2c",
        share_att_key=False,
        norm_rel_ebd="layer_norm",
        position_biased_input=False,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    base.update(kw)
    return DebertaV2Config(**base)


def _compare(cfg: DebertaV2Config, batch: int, seq: int, pad: list[int] | None = None, seed: int = 0):
    torch.manual_seed(seed)
    enc = hf.DebertaV2Encoder(cfg).eval()
    att = enc.layer[0].attention.self
    # Poids non triviaux pour les biais et la table de positions.
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(batch, seq, cfg.hidden_size)
    mask = torch.ones(batch, seq, dtype=torch.long)
    for b, n in enumerate(pad or []):
        if n:
            mask[b, -n:] = 0
    am = enc.get_attention_mask(mask)
    rel = enc.get_rel_pos(x)
    emb = enc.get_rel_embedding()
    with torch.no_grad():
        ref = att(x, am, relative_pos=rel, rel_embeddings=emb)[0]
        mine = DisentangledSelfAttention.from_hf(att).eval()(x, am, relative_pos=rel, rel_embeddings=emb)
    assert isinstance(mine, tuple)
    assert mine[0].shape == ref.shape
    torch.testing.assert_close(mine[0], ref, rtol=1e-5, atol=1e-5)
    return att, mine


@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("buckets", [-1, 0, 4, 8])
@pytest.mark.parametrize("pos_att", ["c2p|p2c", "c2p", "p2c", None])
def test_equal_to_transformers(share, buckets, pos_att):
    cfg = _config(share_att_key=share, position_buckets=buckets, pos_att_type=pos_att, max_relative_positions=16)
    _compare(cfg, batch=2, seq=20, pad=[0, 7])


@pytest.mark.parametrize(
    "batch,seq,heads,hidden",
    [(1, 1, 1, 8), (3, 5, 2, 16), (2, 33, 4, 32), (1, 70, 8, 64)],
)
def test_shapes(batch, seq, heads, hidden):
    cfg = _config(num_attention_heads=heads, hidden_size=hidden, max_position_embeddings=128, position_buckets=8,
                  max_relative_positions=32, share_att_key=True)
    _compare(cfg, batch, seq, pad=[seq // 2] + [0] * (batch - 1))


def test_camemberta_like_config_long_sequence():
    # Paramètres de CamemBERTa (256 seaux, position max 512, clés partagées), taille réduite.
    cfg = _config(hidden_size=24, num_attention_heads=3, max_position_embeddings=512, position_buckets=256,
                  share_att_key=True)
    _compare(cfg, batch=2, seq=300, pad=[0, 120])


def test_no_relative_attention_and_fully_padded_row():
    cfg = _config(relative_attention=False, pos_att_type="c2p|p2c")
    _compare(cfg, batch=2, seq=6, pad=[0, 6])


def test_without_relative_pos_argument_builds_it():
    cfg = _config(position_buckets=4, max_relative_positions=16, share_att_key=True)
    torch.manual_seed(1)
    enc = hf.DebertaV2Encoder(cfg).eval()
    att = enc.layer[0].attention.self
    x = torch.randn(2, 12, cfg.hidden_size)
    am = enc.get_attention_mask(torch.ones(2, 12))
    emb = enc.get_rel_embedding()
    with torch.no_grad():
        ref = att(x, am, relative_pos=enc.get_rel_pos(x), rel_embeddings=emb)[0]
        mine = DisentangledSelfAttention.from_hf(att).eval()(x, torch.ones(2, 12), rel_embeddings=emb)[0]
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)


def test_output_attentions_and_components_sum():
    cfg = _config(share_att_key=True, position_buckets=8, max_relative_positions=16)
    torch.manual_seed(2)
    enc = hf.DebertaV2Encoder(cfg).eval()
    att = enc.layer[0].attention.self
    x = torch.randn(1, 10, cfg.hidden_size)
    am = enc.get_attention_mask(torch.ones(1, 10))
    rel, emb = enc.get_rel_pos(x), enc.get_rel_embedding()
    m = DisentangledSelfAttention.from_hf(att).eval()
    with torch.no_grad():
        _, ref_probs = att(x, am, output_attentions=True, relative_pos=rel, rel_embeddings=emb)
        _, probs = m(x, am, output_attentions=True, relative_pos=rel, rel_embeddings=emb)
        comps = m.score_components(x, rel, emb)
    torch.testing.assert_close(probs, ref_probs, rtol=1e-5, atol=1e-6)
    assert set(comps) == {"c2c", "c2p", "p2c"}
    torch.testing.assert_close(torch.softmax(sum(comps.values()), -1), probs, rtol=1e-5, atol=1e-6)


def test_projections_are_shared_not_copied():
    cfg = _config(share_att_key=True)
    att = hf.DisentangledSelfAttention(cfg)
    m = DisentangledSelfAttention.from_hf(att)
    assert m.query_proj is att.query_proj and m.key_proj is att.key_proj


@pytest.mark.parametrize("buckets,max_pos", [(256, 512), (8, 16), (32, 128), (64, 100)])
def test_log_bucket_equals_transformers(buckets, max_pos):
    rel = torch.arange(-3 * max_pos, 3 * max_pos)
    torch.testing.assert_close(
        log_bucket_position(rel, buckets, max_pos), hf.make_log_bucket_position(rel, buckets, max_pos)
    )


def test_log_bucket_examples_from_issue():
    out = log_bucket_position(torch.tensor([150, 256, 511, -150, 5, -127, 128]), 256, 512)
    assert out.tolist() == [143, 192, 255, -143, 5, -127, 128]


@pytest.mark.parametrize("buckets,max_pos", [(-1, -1), (0, 64), (8, 16), (256, 512)])
def test_relative_positions_equal_transformers(buckets, max_pos):
    q = torch.zeros(1, 40, 4)
    ref = hf.build_relative_position(q, q, bucket_size=buckets, max_position=max_pos)
    assert torch.equal(relative_positions(40, 40, buckets, max_pos), ref)


def test_bad_inputs():
    with pytest.raises(TypeError, match="entiers"):
        log_bucket_position(torch.tensor([1.5]), 256, 512)
    with pytest.raises(ValueError, match="max_position"):
        log_bucket_position(torch.tensor([1]), 256, 100)
    with pytest.raises(TypeError, match="bucket_size"):
        log_bucket_position(torch.tensor([1]), 2.0, 512)
    with pytest.raises(TypeError, match="DisentangledSelfAttention"):
        DisentangledSelfAttention.from_hf(torch.nn.Linear(3, 3))
    lin = torch.nn.Linear(8, 8)
    with pytest.raises(ValueError, match="pos_att_type"):
        DisentangledSelfAttention(lin, lin, lin, 2, pos_att_type=["c2c"])
    with pytest.raises(ValueError, match="pos_key_proj"):
        DisentangledSelfAttention(lin, lin, lin, 2, pos_att_type=["c2p"], share_att_key=False)
    m = DisentangledSelfAttention(lin, lin, lin, 2, share_att_key=True, max_relative_positions=4)
    with pytest.raises(ValueError, match="rel_embeddings"):
        m(torch.randn(1, 3, 8), torch.ones(1, 3))


def test_swap_into_full_model():
    # On remplace l'attention de chaque couche d'un DebertaV2Model complet : mêmes sorties.
    cfg = _config(num_hidden_layers=3, share_att_key=True, position_buckets=8, max_relative_positions=32,
                  conv_kernel_size=3, max_position_embeddings=64)
    torch.manual_seed(3)
    model = hf.DebertaV2Model(cfg).eval()
    ids = torch.randint(1, 50, (2, 25))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
        for layer in model.encoder.layer:
            layer.attention.self = DisentangledSelfAttention.from_hf(layer.attention.self).eval()
        mine = model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)


def test_c2p_and_p2c_terms_match_explicit_loops():
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 7, 4)  # (B, H, Tq, d), (B, H, Tk, d)
    pos_k, pos_q = torch.randn(3, 8, 4), torch.randn(3, 8, 4)  # (H, 2k, d)
    idx = torch.randint(0, 8, (5, 7))  # (Tq, Tk)
    c2p, p2c = deberta.c2p_term(q, pos_k, idx), deberta.p2c_term(k, pos_q, idx)
    assert c2p.shape == p2c.shape == (2, 3, 5, 7)
    for i in range(5):
        for j in range(7):
            r = idx[i, j]
            assert torch.allclose(c2p[:, :, i, j], (q[:, :, i] * pos_k[:, r]).sum(-1), atol=1e-5)
            assert torch.allclose(p2c[:, :, i, j], (k[:, :, j] * pos_q[:, r]).sum(-1), atol=1e-5)


def test_without_position_terms_it_is_scaled_dot_product_attention():
    torch.manual_seed(0)
    lin = [torch.nn.Linear(16, 16) for _ in range(3)]
    att = deberta.DisentangledSelfAttention(*lin, num_heads=2, pos_att_type=(), relative_attention=False).eval()
    x = torch.randn(2, 6, 16)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    with torch.no_grad():
        mine = att(x, mask)[0]
        q, k, v = (m(x).view(2, 6, 2, 8).transpose(1, 2) for m in lin)
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask.bool()[:, None, None, :])
    ref = ref.transpose(1, 2).reshape(2, 6, 16)
    assert torch.allclose(mine[mask.bool()], ref[mask.bool()], atol=1e-5)


def test_c2c_only_deberta_is_permutation_equivariant():
    from transformers import DebertaV2Config, DebertaV2ForMaskedLM

    cfg = DebertaV2Config(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=32, max_position_embeddings=16, relative_attention=True,
                          position_buckets=4, max_relative_positions=16, pos_att_type=None, share_att_key=True,
                          position_biased_input=False, type_vocab_size=0)
    torch.manual_seed(0)
    model = DebertaV2ForMaskedLM(cfg).eval()
    for layer in model.deberta.encoder.layer:
        layer.attention.self = deberta.DisentangledSelfAttention.from_hf(layer.attention.self)
    model.eval()  # le nouveau module naît en mode entraînement (abandon actif)
    ids = torch.randint(5, 50, (2, 12))
    perm = torch.randperm(12)
    with torch.no_grad():
        out = model(input_ids=ids).logits
        out_perm = model(input_ids=ids[:, perm]).logits
    assert torch.allclose(out[:, perm], out_perm, atol=1e-5)
