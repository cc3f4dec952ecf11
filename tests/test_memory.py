"""atelier.lora_nf4.memory : la calculatrice comparée à la mémoire de vrais modèles chargés."""

import warnings

import pytest
import torch

from atelier.lora_nf4 import memory

MISTRAL_7B = dict(model_type="mistral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    from atelier.lora_nf4.sft import make_tiny_chat_model

    return make_tiny_chat_model(tmp_path_factory.mktemp("tiny"), hidden_size=128, num_layers=2)


def test_parameter_count_is_exact(tiny_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    expected = sum(p.numel() for p in model.parameters())  # poids liés comptés une fois
    assert memory.weights_memory(tiny_path, "fp32")["n_parameters"] == expected


def test_mistral_7b_numbers():
    info = memory.weights_memory(MISTRAL_7B, "fp16")
    assert info["n_parameters"] == 7_241_732_096
    assert info["total_bytes"] == 2 * 7_241_732_096
    assert memory.weights_memory(MISTRAL_7B, "fp32")["total_bytes"] == 4 * 7_241_732_096
    nf4 = memory.weights_memory(MISTRAL_7B, "nf4", double_quant=True)
    assert 4.1 < nf4["bits_per_parameter"] < 4.6  # 4,127 bits pour les Linear, 16 pour les plongements
    int8 = memory.weights_memory(MISTRAL_7B, "int8")
    assert 8 < int8["bits_per_parameter"] < 8.6


def test_seed_arithmetic_full_finetuning():
    # Tutoriel d'origine : 14 Go de poids fp16 + 14 de gradients + 28 pour AdamW ≈ 56 Go.
    full = memory.finetune_memory(MISTRAL_7B, "full", optimizer_bytes=4)
    assert full["weights_bytes"] == full["gradients_bytes"] == 2 * full["n_parameters"]
    assert full["optimizer_bytes"] == 4 * full["n_parameters"]
    assert 55e9 < full["total_bytes"] < 59e9
    # Précision mixte réaliste : + copie float32 et moments float32 → 16 octets par paramètre.
    mixed = memory.finetune_memory(MISTRAL_7B, "full", weight_precision="bf16", master_bytes=4)
    assert mixed["total_bytes"] == 16 * mixed["n_parameters"]


def test_qlora_fits_a_t4():
    q = memory.finetune_memory(MISTRAL_7B, "qlora", r=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    assert q["n_trainable"] == 32 * 16 * (2 * 8192 + 2 * 5120)
    assert q["total_bytes"] < 5e9
    assert q["gradients_bytes"] == 4 * q["n_trainable"] and q["optimizer_bytes"] == 8 * q["n_trainable"]
    lora = memory.finetune_memory(MISTRAL_7B, "lora", r=16)
    assert lora["weights_bytes"] > 3 * q["weights_bytes"]


def test_activation_estimate():
    a_ckpt = memory.activation_memory(MISTRAL_7B, 1, 512, checkpointing=True)
    a_full = memory.activation_memory(MISTRAL_7B, 1, 512, checkpointing=False)
    assert 0 < a_ckpt < a_full
    assert memory.activation_memory(MISTRAL_7B, 2, 512) > a_ckpt
    with pytest.raises(ValueError, match="seq_len"):
        memory.activation_memory(MISTRAL_7B, 1, 0)


@pytest.mark.parametrize("precision,double_quant", [("fp32", False), ("bf16", False), ("int8", False), ("nf4", False), ("nf4", True)])
def test_computed_equals_tensor_bytes_of_loaded_tiny_model(tiny_path, precision, double_quant):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        measured = memory.measure_loaded(tiny_path, precision, double_quant=double_quant)
    computed = memory.weights_memory(tiny_path, precision, double_quant=double_quant)["total_bytes"]
    assert abs(measured["tensor_bytes"] - computed) / computed < 0.01


def test_bad_inputs():
    with pytest.raises(ValueError, match="Précision inconnue"):
        memory.weights_memory(MISTRAL_7B, "int4")
    with pytest.raises(ValueError, match="model_type"):
        memory.weights_memory({"hidden_size": 8}, "fp32")
    with pytest.raises(TypeError, match="PretrainedConfig"):
        memory.weights_memory(42, "fp32")
    with pytest.raises(ValueError, match="method"):
        memory.finetune_memory(MISTRAL_7B, "prefix")
    with pytest.raises(ValueError, match="block_size"):
        memory.weights_memory(MISTRAL_7B, "nf4", block_size=0)


@pytest.mark.slow
def test_real_chat_model_within_10_percent(tmp_path):
    """SmolLM2-135M chargé en fp32, bf16, int8 et NF4 : calcul et mesure à moins de 10 %."""
    from atelier.assets import models
    from atelier.lora_nf4.sft import make_tiny_chat_model

    path = models.local_dir("chat")
    if not (path / "model.safetensors").is_file():
        pytest.skip("modèle de conversation léger pas encore préparé")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny = make_tiny_chat_model(tmp_path / "echauffement")
        for p in ("int8", "nf4"):  # premier passage : initialisations de bitsandbytes hors mesure
            memory.measure_loaded(tiny, p)
        for precision in ("fp32", "bf16", "int8", "nf4"):
            measured = memory.measure_loaded(path, precision)
            computed = memory.weights_memory(path, precision)["total_bytes"]
            assert abs(measured["tensor_bytes"] - computed) / computed < 0.02, precision
            assert abs(measured["rss_bytes"] - computed) / computed < 0.10, (precision, measured, computed)
