"""atelier.lora_nf4.lora comparé à peft 0.21 (LoraConfig + get_peft_model)."""

import copy

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")
from peft import LoraConfig, get_peft_model  # noqa: E402

from atelier.lora_nf4.lora import LoRALinear, apply_lora, lora_parameter_count, parameter_counts  # noqa: E402


class Wrapper(nn.Module):
    def __init__(self, lin):
        super().__init__()
        self.lin = lin

    def forward(self, x):
        return self.lin(x)


def _peft_layer(lin, r, alpha):
    model = get_peft_model(Wrapper(copy.deepcopy(lin)), LoraConfig(r=r, lora_alpha=alpha, target_modules=["lin"], lora_dropout=0.0))
    return model, model.base_model.model.lin


@pytest.mark.parametrize("in_f,out_f,bias", [(8, 4, True), (16, 16, False), (33, 7, True), (1, 5, True)])
@pytest.mark.parametrize("r,alpha", [(1, 1), (2, 16), (4, 8), (8, 3.5)])
@pytest.mark.parametrize("x_shape", [(3,), (2, 5), (2, 3, 4)])
def test_forward_merge_unmerge_equal_peft(in_f, out_f, bias, r, alpha, x_shape):
    lin = nn.Linear(in_f, out_f, bias=bias)
    if r > min(in_f, out_f):  # peft l'accepte ; ici, un rang qui dépasse la couche est refusé
        with pytest.raises(ValueError, match=rf"min\(in_features, out_features\) = {min(in_f, out_f)}"):
            LoRALinear(lin, r=r, alpha=alpha)
        return
    torch.manual_seed(in_f * 31 + r)
    lin = nn.Linear(in_f, out_f, bias=bias)
    model, peft_lin = _peft_layer(lin, r, alpha)
    ours = LoRALinear(copy.deepcopy(lin), r=r, alpha=alpha)
    with torch.no_grad():  # B non nul, sinon le test ne prouverait rien
        peft_lin.lora_B["default"].weight.normal_()
        ours.A.copy_(peft_lin.lora_A["default"].weight)
        ours.B.copy_(peft_lin.lora_B["default"].weight)
    assert ours.scaling == peft_lin.scaling["default"] == alpha / r
    x = torch.randn(*x_shape, in_f)
    expected = model(x)
    assert torch.allclose(ours(x), expected, atol=1e-5)
    assert not torch.allclose(ours(x), lin(x), atol=1e-4)  # la mise à jour compte vraiment
    # Formule explicite : base(x) + (alpha/r) · x Aᵀ Bᵀ
    explicit = lin(x) + (alpha / r) * x @ ours.A.T @ ours.B.T
    assert torch.allclose(ours(x), explicit, atol=1e-5)
    # Fusion : mêmes poids fusionnés que peft, même sortie
    model.merge_adapter()
    ours.merge()
    assert torch.allclose(ours.base.weight, peft_lin.base_layer.weight, atol=1e-6)
    assert torch.allclose(ours(x), model(x), atol=1e-5)
    assert torch.allclose(ours(x), expected, atol=1e-5)
    model.unmerge_adapter()
    ours.unmerge()
    assert torch.allclose(ours.base.weight, lin.weight, atol=1e-6)
    assert torch.allclose(ours(x), expected, atol=1e-5)


def test_initialisation_like_peft():
    torch.manual_seed(0)
    lin = nn.Linear(64, 32)
    ours = LoRALinear(lin, r=8, alpha=16)
    assert ours.A.shape == (8, 64) and ours.B.shape == (32, 8)
    assert torch.count_nonzero(ours.B) == 0  # au départ, le modèle est inchangé
    x = torch.randn(5, 64)
    assert torch.equal(ours(x), lin(x))
    bound = 1 / 64**0.5  # Kaiming uniforme avec a = √5 : U(-1/√in, 1/√in)
    assert ours.A.abs().max() <= bound


def test_only_A_and_B_train_and_bias_is_frozen():
    lin = nn.Linear(10, 6, bias=True)
    ours = LoRALinear(lin, r=2, alpha=4)
    names = {n for n, p in ours.named_parameters() if p.requires_grad}
    assert names == {"A", "B"}
    assert not lin.weight.requires_grad and not lin.bias.requires_grad
    with torch.no_grad():
        ours.B.normal_()
    ours(torch.randn(3, 10)).sum().backward()
    assert lin.weight.grad is None and lin.bias.grad is None
    assert ours.A.grad is not None and ours.B.grad is not None
    assert parameter_counts(ours) == (2 * 10 + 6 * 2, 10 * 6 + 6 + 2 * 10 + 6 * 2)


def test_dropout_only_on_lora_path_and_not_when_merged():
    torch.manual_seed(0)
    lin = nn.Linear(16, 16)
    ours = LoRALinear(lin, r=4, alpha=4, dropout=0.5)
    with torch.no_grad():
        ours.B.normal_()
    x = torch.randn(8, 16)
    ours.eval()
    a, b = ours(x), ours(x)
    assert torch.equal(a, b)
    ours.train()
    assert not torch.allclose(ours(x), a)
    ours.merge()
    assert torch.allclose(ours(x), a, atol=1e-5)


@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]])
@pytest.mark.parametrize("r", [1, 4])
def test_small_model_equal_peft_and_counts(tiny_models, targets, r):
    base = tiny_models.llama(vocab_size=97)
    ours = apply_lora(copy.deepcopy(base), targets, r=r, alpha=2 * r)
    theirs = get_peft_model(copy.deepcopy(base), LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets, lora_dropout=0.0))
    trainable, total = theirs.get_nb_trainable_parameters()
    assert parameter_counts(ours) == (trainable, total)
    assert lora_parameter_count(base, r, targets) == trainable
    torch.manual_seed(1)
    for name, module in ours.named_modules():
        if isinstance(module, LoRALinear):
            p = theirs.base_model.model.get_submodule(name)
            with torch.no_grad():
                p.lora_B["default"].weight.normal_(std=0.1)
                module.A.copy_(p.lora_A["default"].weight)
                module.B.copy_(p.lora_B["default"].weight)
    ids = torch.randint(0, 97, (2, 9))
    expected = theirs(input_ids=ids).logits
    assert torch.allclose(ours(input_ids=ids).logits, expected, atol=1e-4)
    assert not torch.allclose(base(input_ids=ids).logits, expected, atol=1e-3)
    for m in ours.modules():
        if isinstance(m, LoRALinear):
            m.merge()
    merged = theirs.merge_and_unload()
    assert torch.allclose(ours(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4)


def test_count_on_meta_device():
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    # Mistral-7B, r = 16 sur q, k, v, o : 16·(4096+4096)·2 + 16·(4096+1024)·2 par couche
    assert lora_parameter_count(model, 16, ["q_proj", "k_proj", "v_proj", "o_proj"]) == 32 * 16 * (2 * 8192 + 2 * 5120)


@pytest.mark.parametrize("r,alpha,dropout,err", [
    (0, 8, 0.0, ValueError), (-1, 8, 0.0, ValueError), (2.0, 8, 0.0, TypeError),
    (4, 0, 0.0, ValueError), (4, -1.0, 0.0, ValueError), (4, "8", 0.0, TypeError),
    (4, 8, 1.0, ValueError), (4, 8, -0.1, ValueError),
])
def test_bad_hyperparameters(r, alpha, dropout, err):
    with pytest.raises(err):
        LoRALinear(nn.Linear(4, 4), r=r, alpha=alpha, dropout=dropout)


def test_bad_base_and_targets_and_double_merge(tiny_models):
    with pytest.raises(TypeError, match="nn.Linear"):
        LoRALinear(nn.Conv1d(4, 4, 1), r=2, alpha=2)
    with pytest.raises(ValueError, match="Aucune couche"):
        apply_lora(tiny_models.llama(vocab_size=97), ["nexiste_pas"], r=2, alpha=2)
    with pytest.raises(ValueError, match="vide"):
        apply_lora(tiny_models.llama(vocab_size=97), [], r=2, alpha=2)
    layer = LoRALinear(nn.Linear(4, 4), r=2, alpha=2)
    with pytest.raises(ValueError, match="pas fusionnés"):
        layer.unmerge()
    layer.merge()
    with pytest.raises(ValueError, match="déjà fusionnés"):
        layer.merge()


def test_parameter_counts_of_a_4bit_model_equal_peft(tiny_chat_path):
    """Un poids NF4 compte pour la matrice qu'il représente, pas pour ses octets (deux valeurs par octet)."""
    pytest.importorskip("bitsandbytes")
    from atelier.adapters import add_lora
    from atelier.lora_nf4 import chat, sft
    from atelier.parameters import count_parameters

    path = tiny_chat_path
    full, _ = chat.load_model(path, four_bit=False, compute_dtype=torch.float32)
    real_total = parameter_counts(full)[1]
    assert real_total == sum(p.numel() for p in full.parameters())
    model, _ = chat.load_model(path, four_bit=True, compute_dtype=torch.float32)
    assert sum(p.numel() for p in model.parameters()) < real_total  # le stockage uint8 en compte moitié moins
    assert parameter_counts(model)[1] == real_total
    model = add_lora(model, sft.DEFAULT_TARGETS, task="CAUSAL_LM", r=4, alpha=8, dropout=0.0)
    trainable, total = model.get_nb_trainable_parameters()
    assert parameter_counts(model) == (trainable, total)
    assert total == real_total + trainable  # la base, comptée en entier, plus les adaptateurs
    assert count_parameters(model) == trainable and count_parameters(model, trainable_only=False) == total
    with pytest.raises(TypeError, match="nn.Module"):
        count_parameters([torch.zeros(3)])
