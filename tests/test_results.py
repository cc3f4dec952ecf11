"""atelier.lora_nf4.results : message système, réponses par lots, langue des réponses, adaptateur zippé."""

import zipfile

import pytest
import torch

from atelier.lora_nf4 import chat, results

CONV = {"messages": [{"role": "user", "content": "Quelle est la capitale de la France ?"},
                     {"role": "assistant", "content": "Paris."}]}


def test_with_system_prompt_adds_keeps_or_replaces_the_system_message():
    with_sys = {"messages": [{"role": "system", "content": "Tu vouvoies."}, *CONV["messages"]]}
    added, kept = results.with_system_prompt([CONV, with_sys])
    assert added["messages"] == [{"role": "system", "content": results.FRENCH_SYSTEM_PROMPT}, *CONV["messages"]]
    assert kept == with_sys                                        # le message système du lecteur est gardé
    for conv in results.with_system_prompt([CONV, with_sys], replace=True):
        assert conv["messages"][0] == {"role": "system", "content": results.FRENCH_SYSTEM_PROMPT}
        assert conv["messages"][1:] == CONV["messages"]
    assert CONV["messages"][0]["role"] == "user"  # l'original n'est pas modifié
    with pytest.raises(TypeError, match="replace"):
        results.with_system_prompt([CONV], replace=1)
    with pytest.raises(ValueError, match="non vide"):
        results.with_system_prompt([CONV], "  ")
    with pytest.raises(ValueError, match="rôle inconnu"):
        results.with_system_prompt([{"messages": [{"role": "robot", "content": "x"}]}])


def test_with_system_prompt_replaces_the_default_english_system_prompt(tiny_chat_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_chat_path)
    text = chat.render(tok, results.with_system_prompt([CONV])[0]["messages"])
    assert text.startswith(f"<|im_start|>system\n{results.FRENCH_SYSTEM_PROMPT}<|im_end|>")


def test_reply_batch_matches_one_by_one_greedy_replies(tiny_chat_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_chat_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_path, dtype=torch.float32).eval()
    prompts = [[{"role": "user", "content": q}] for q in ("Bonjour !", "Quelle est la capitale de la France ?", "Ça va ?")]
    one_by_one = [chat.reply(model, tok, p, max_new_tokens=6) for p in prompts]
    assert results.reply_batch(model, tok, prompts, max_new_tokens=6, batch_size=2) == one_by_one
    assert results.reply_batch(model, tok, prompts, max_new_tokens=6) == one_by_one
    with pytest.raises(ValueError, match="user"):
        results.reply_batch(model, tok, [[*CONV["messages"]]])
    with pytest.raises(ValueError, match="non vide"):
        results.reply_batch(model, tok, [])
    with pytest.raises(ValueError, match="max_new_tokens"):
        results.reply_batch(model, tok, prompts, max_new_tokens=0)


@pytest.mark.parametrize("text, french", [
    ("La capitale de la France est Paris, une ville très peuplée.", True),
    ("The capital of France is Paris, and it is a large city.", False),
    ("Paris.", False),  # aucun mot-outil : pas compté comme français
    ("Je pense que the answer is obvious et que vous le savez.", True),
    ("", False),
])
def test_is_french(text, french):
    assert results.is_french(text) is french


def test_language_counts_and_share():
    assert results.language_counts("Le chat et le chien. The cat.") == (3, 1)
    assert results.language_counts("L'eau est là.") == (1, 0)   # « l' » n'est pas compté, « est » l'est
    assert results.french_share(["Il fait beau et chaud.", "It is sunny.", "Oui."]) == pytest.approx(1 / 3)
    assert not results.FRENCH_WORDS & results.ENGLISH_WORDS
    with pytest.raises(TypeError):
        results.language_counts(3)
    with pytest.raises(ValueError):
        results.french_share([])
    with pytest.raises(ValueError):
        results.french_share("un texte")


def test_zip_adapter_round_trip(tmp_path):
    folder = tmp_path / "adaptateur"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}", encoding="utf-8")
    (folder / "adapter_model.safetensors").write_bytes(b"0123")
    archive = results.zip_adapter(folder)
    assert archive == tmp_path / "adaptateur.zip"
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["adaptateur/", "adaptateur/adapter_config.json",
                                        "adaptateur/adapter_model.safetensors"]
        assert z.read("adaptateur/adapter_model.safetensors") == b"0123"
    other = results.zip_adapter(folder, tmp_path / "sortie" / "mon.zip")
    assert other == tmp_path / "sortie" / "mon.zip" and other.is_file()
    with pytest.raises(ValueError, match="adapter_config.json"):
        results.zip_adapter(tmp_path / "vide")
    with pytest.raises(ValueError, match=".zip"):
        results.zip_adapter(folder, tmp_path / "mon.tar")


def test_dequantize_4bit_layers_keeps_the_function_of_the_nf4_model(tiny_chat_path):
    import bitsandbytes as bnb

    from atelier.adapters import add_lora

    model, tok = chat.load_model(tiny_chat_path, four_bit=True, double_quant=False, compute_dtype=torch.float32)
    model = add_lora(model, ["q_proj", "v_proj"], task="CAUSAL_LM", r=4, alpha=8)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)   # B non nul : l'adaptateur compte dans la sortie
    ids = torch.tensor([[1, 5, 9, 12, 30, 7]])
    model.eval()
    with torch.no_grad(), chat_keep(model):
        before = model(input_ids=ids).logits
    n4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert results.dequantize_4bit_layers(model) == n4 > 0
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    with torch.no_grad():
        after = model(input_ids=ids).logits
    assert torch.allclose(before, after, atol=1e-4), float((before - after).abs().max())
    with pytest.raises(TypeError, match="dtype"):
        results.dequantize_4bit_layers(model, dtype=torch.int8)


def chat_keep(model):
    from atelier.lora_nf4.quantization import keep_4bit_trainable

    return keep_4bit_trainable(model)
