"""atelier.lora_nf4.sft : données, perte, boucle d'entraînement, CLI et accelerate launch (2 processus CPU)."""

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from atelier.adapters import add_lora
from atelier.lora_nf4 import chat, sft
from atelier.lora_nf4.chat import IGNORE_INDEX

CONVS = [
    {"messages": [{"role": "user", "content": f"Question numéro {i} : quelle est la capitale de la France ?"},
                  {"role": "assistant", "content": "La capitale de la France est Paris."}]}
    for i in range(12)
]
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def tiny_path(tiny_chat_path):
    return tiny_chat_path


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "dialogues.jsonl"
    path.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in CONVS) + "\n", encoding="utf-8")
    return path


def test_collate_pads_right_and_ignores_padding():
    a = {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [IGNORE_INDEX, 6, 7]}
    b = {"input_ids": [8], "attention_mask": [1], "labels": [8]}
    batch = sft.collate([a, b], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]


def test_build_examples_counts_what_it_sets_aside(tiny_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_path)
    long_prompt = {"messages": [{"role": "user", "content": "mot " * 200}, {"role": "assistant", "content": "Oui."}]}
    examples, info = sft.build_examples(tok, CONVS[:3] + [long_prompt], max_length=96)
    assert info["conversations"] == 4 and info["examples"] == 3 and info["skipped"] == 1
    assert info["assistant_tokens"] == sum(sum(lab != IGNORE_INDEX for lab in e["labels"]) for e in examples)


def test_evaluate_matches_transformers_loss(tiny_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_path).eval()
    examples, _ = sft.build_examples(tok, CONVS[:1], max_length=64)
    ours = sft.evaluate(model, examples, tok.pad_token_id)
    with torch.no_grad():
        ref = model(**sft.collate(examples, tok.pad_token_id)).loss
    assert abs(ours["loss"] - float(ref)) < 1e-5
    assert abs(ours["perplexity"] - float(torch.exp(ref))) < 1e-3
    # Plusieurs exemples de longueurs différentes : moyenne par jeton, pas par exemple.
    examples, _ = sft.build_examples(tok, CONVS[:2] + [{"messages": CONVS[0]["messages"] * 2}], max_length=64)
    per_example = [sft.evaluate(model, [e], tok.pad_token_id) for e in examples]
    total = sum(r["loss"] * r["n_tokens"] for r in per_example) / sum(r["n_tokens"] for r in per_example)
    assert abs(sft.evaluate(model, examples, tok.pad_token_id, batch_size=2)["loss"] - total) < 1e-5


@pytest.mark.parametrize("four_bit", [False, True])
def test_training_lowers_the_loss_and_only_lora_moves(tiny_path, four_bit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, tok = chat.load_model(tiny_path, four_bit=four_bit)
    if four_bit:
        assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    model = add_lora(model, ALL_LINEAR, task="CAUSAL_LM", r=8, alpha=16, dropout=0.0)
    # state_dict() rend le format de stockage canonique (bitsandbytes réorganise les poids
    # 4 bits pour son noyau CPU d'inférence, et remet alors les absmax en bf16).
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
    examples, _ = sft.build_examples(tok, CONVS, max_length=64)
    before = sft.evaluate(model, examples, tok.pad_token_id)["loss"]
    result = sft.train(model, examples, tok.pad_token_id, max_steps=12, lr=1e-2, batch_size=4, progress=False)
    after = sft.evaluate(result["model"], examples, tok.pad_token_id)["loss"]
    assert after < before - 0.5
    assert len(result["losses"]) == 12 and result["steps_per_second"] > 0
    after_state = result["model"].state_dict()
    for k, v in frozen.items():
        if "absmax" in k or "quant_map" in k or "quant_state" in k:
            continue  # constantes ré-encodées par le noyau CPU (bf16, double quantification refaite)
        assert torch.equal(after_state[k], v), k  # codes 4 bits, normes, plongements : intacts
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in after_state.items())


def test_bad_training_arguments(tiny_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    with pytest.raises(ValueError, match="Aucun exemple"):
        sft.train(model, [], 0)
    with pytest.raises(ValueError, match="batch_size"):
        sft.train(model, [{"input_ids": [1], "attention_mask": [1], "labels": [1]}], 0, batch_size=0)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="aucun paramètre entraînable"):
        sft.train(model, [{"input_ids": [1], "attention_mask": [1], "labels": [1]}], 0, progress=False)
    with pytest.raises(ValueError, match="r"):
        add_lora(model, sft.DEFAULT_TARGETS, task="CAUSAL_LM", r=0)


def _check_adapter(tiny_path, out):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))  # pas de pickle
    summary = json.loads((out / "train_summary.json").read_text(encoding="utf-8"))
    assert summary["adapter_bytes"] == sft.adapter_size(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_path).eval()
    ids = torch.tensor([[1, 5, 9, 12, 3]])
    with torch.no_grad():
        plain = base(input_ids=ids).logits.clone()
        model = PeftModel.from_pretrained(base, str(out)).eval()
        adapted = model(input_ids=ids).logits
        merged = model.merge_and_unload()(input_ids=ids).logits
    assert not torch.allclose(plain, adapted, atol=1e-4)  # l'adaptateur change quelque chose
    assert torch.allclose(adapted, merged, atol=1e-4)  # fusionner ne change pas la sortie
    return summary


def test_cli_single_process(tiny_path, data_file, tmp_path):
    out = tmp_path / "adapter"
    summary = sft.main(["--model", str(tiny_path), "--data", str(data_file), "--output", str(out), "--max-steps", "3",
                        "--batch-size", "2", "--lr", "1e-2", "--r", "4", "--alpha", "8", "--max-length", "64",
                        "--test-fraction", "0.2"])
    assert summary["steps"] == 3 and summary["processes"] == 1
    _check_adapter(tiny_path, out)


def test_accelerate_launch_two_cpu_processes(tiny_path, data_file, tmp_path):
    # accelerate 1.15 : « --cpu » passe par le lanceur simple, qui ne démarre qu'UN processus
    # sans fichier d'hôtes MPI. Deux processus CPU : lanceur distribué (torchrun) sans GPU
    # visible ; chaque processus crée Accelerator(cpu=True) → DDP sur CPU (gloo).
    out = tmp_path / "adapter-ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "atelier.lora_nf4.sft", "--model", str(tiny_path), "--data", str(data_file), "--output", str(out),
           "--max-steps", "2", "--batch-size", "2", "--lr", "1e-2", "--r", "4", "--alpha", "8",
           "--max-length", "64", "--test-fraction", "0.2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = _check_adapter(tiny_path, out)
    assert summary["processes"] == 2
    assert summary["examples_per_step"] == 4  # 2 par processus × 2 processus
    assert "sur 2 processus" in proc.stdout


def _lora_grad(model, ids):
    model.train()
    model.zero_grad()
    model(input_ids=ids, labels=ids).loss.backward()
    return model.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"].weight.grad.clone()


def _fresh_qlora(tiny_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = chat.load_model(tiny_path, four_bit=True, double_quant=False, compute_dtype=torch.bfloat16)
    model = add_lora(model, sft.DEFAULT_TARGETS, task="CAUSAL_LM", r=4, alpha=8, dropout=0.0)
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.normal_(std=0.1)
    return model


def test_evaluate_keeps_4bit_layers_trainable(tiny_path):
    # bitsandbytes (CPU AVX512-BF16) réorganise une couche NF4 au premier passage eval sans
    # gradient, dans un format sans rétropropagation : evaluate() doit l'éviter.
    ids = torch.tensor([[1, 5, 9, 12, 3, 7, 8, 20]])
    fresh = _lora_grad(_fresh_qlora(tiny_path), ids)
    model = _fresh_qlora(tiny_path)
    sft.evaluate(model, [{"input_ids": ids[0].tolist(), "attention_mask": [1] * 8, "labels": ids[0].tolist()}], 0)
    assert sft.packed_for_inference(model) == 0
    assert torch.equal(_lora_grad(model, ids), fresh)


def test_training_refuses_layers_packed_for_inference(tiny_path):
    model = _fresh_qlora(tiny_path)
    model.eval()
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 2, 3]]))
    if sft.packed_for_inference(model) == 0:
        pytest.skip("ce processeur n'a pas le noyau CPU réorganisé de bitsandbytes (AVX512-BF16)")
    ids = torch.tensor([[1, 5, 9, 12, 3, 7, 8, 20]])
    assert not torch.allclose(_lora_grad(model, ids), _lora_grad(_fresh_qlora(tiny_path), ids))  # gradients faux
    with pytest.raises(ValueError, match="réorganisées"):
        sft.train(model, [{"input_ids": [1, 2, 3], "attention_mask": [1, 1, 1], "labels": [1, 2, 3]}], 0, progress=False)
