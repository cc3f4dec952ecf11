"""Précision de calcul et fils de calcul : une seule décision (atelier.runtime.config), respectée partout.

Sur un processeur sans bfloat16 natif (AVX2, AVX-512 sans BF16), chaque produit
matriciel bf16 est émulé et environ cent fois plus lent qu'en float32 : le
chapitre 04 y dépassait le délai d'exécution. Ces tests remplacent la sonde du
processeur par « non » et vérifient que le chemin d'entraînement du chapitre 04
calcule alors en float32 de bout en bout.
"""

import re
from pathlib import Path

import pytest
import torch

from atelier.runtime import config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cpu_without_bf16(monkeypatch):
    monkeypatch.delenv("ATELIER_FP32", raising=False)
    monkeypatch.setattr(config, "cpu_native_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def cpu_with_bf16(monkeypatch):
    monkeypatch.delenv("ATELIER_FP32", raising=False)
    monkeypatch.setattr(config, "cpu_native_bf16", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cpu_without_native_bf16_computes_in_fp32(cpu_without_bf16):
    assert config.compute_dtype() == torch.float32
    assert config.compute_dtype("cpu") == torch.float32
    assert not config.use_bf16()
    assert config.precision_name() == "fp32"
    assert "sans bfloat16 natif" in config.precision_reason()


def test_cpu_with_native_bf16_uses_bf16_unless_forced(cpu_with_bf16, monkeypatch):
    assert config.compute_dtype("cpu") == torch.bfloat16
    assert config.precision_name("cpu") == "bf16"
    monkeypatch.setenv("ATELIER_FP32", "1")
    assert config.compute_dtype("cpu") == torch.float32
    assert config.precision_reason("cpu") == "fp32 (imposé par ATELIER_FP32)"
    monkeypatch.setenv("ATELIER_FP32", "0")
    assert config.compute_dtype("cpu") == torch.bfloat16
    monkeypatch.setenv("ATELIER_FP32", "peut-être")
    with pytest.raises(ValueError, match="ATELIER_FP32"):
        config.compute_dtype("cpu")


@pytest.mark.parametrize("bf16_card,expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_gpu_uses_bf16_where_supported_else_fp16(monkeypatch, bf16_card, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_card)
    monkeypatch.setenv("ATELIER_FP32", "1")   # ne concerne que le CPU
    assert config.compute_dtype() == expected
    assert config.compute_dtype("cuda:0") == expected
    assert config.compute_dtype("cpu") in (torch.float32, torch.bfloat16)


def test_device_argument_is_checked():
    with pytest.raises(TypeError, match="device"):
        config.compute_dtype(3)


def test_autocast_is_a_no_op_without_native_bf16(cpu_without_bf16):
    from atelier import finetuning as finetune

    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with config.autocast("cpu"):
        assert (a @ b).dtype == torch.float32
    with finetune.autocast(True):   # même si l'appelant demande la précision mixte
        assert (a @ b).dtype == torch.float32


def test_autocast_uses_bf16_on_native_cpu(cpu_with_bf16):
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with config.autocast("cpu"):
        assert (a @ b).dtype == torch.bfloat16
    with config.autocast("cpu", enabled=False):
        assert (a @ b).dtype == torch.float32


def test_trainer_arguments_follow_the_decision(cpu_without_bf16, tmp_path):
    from atelier.camembert import nli

    args = nli.training_arguments(tmp_path, num_epochs=1)
    assert not args.bf16 and not args.fp16


def test_quantization_config_defaults_to_book_precision(cpu_without_bf16):
    from atelier.lora_nf4.memory import quantization_config

    assert quantization_config("nf4").bnb_4bit_compute_dtype == torch.float32


def test_threads_setting(monkeypatch):
    monkeypatch.setenv("ATELIER_THREADS", "1")
    assert config.apply_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("ATELIER_THREADS", "zéro")
    with pytest.raises(ValueError, match="ATELIER_THREADS"):
        config.num_threads()
    monkeypatch.delenv("ATELIER_THREADS")
    assert config.num_threads() >= 1
    config.apply_threads()


def test_chapter04_training_path_is_fp32_without_native_bf16(cpu_without_bf16, tiny_chat_path, tmp_path):
    """Le chemin du chapitre 04 (NF4 + LoRA + sft.train) sur un petit modèle : tout en float32."""
    from atelier.adapters import add_lora
    from atelier.lora_nf4 import chat, sft

    path = tiny_chat_path
    model, tok = chat.load_model(path, four_bit=True, double_quant=False)
    assert model.config.quantization_config.bnb_4bit_compute_dtype == torch.float32
    model = add_lora(model, sft.DEFAULT_TARGETS, task="CAUSAL_LM", r=4, alpha=8, dropout=0.0)
    floats = [p for p in model.parameters() if p.is_floating_point()]
    assert floats and all(p.dtype == torch.float32 for p in floats)
    lora_layers = [m for n, m in model.named_modules() if n.endswith("lora_A.default") or n.endswith("lora_B.default")]
    assert lora_layers and all(m.weight.dtype == torch.float32 for m in lora_layers)

    seen: set = set()

    def hook(_module, _inputs, output):
        outs = output if isinstance(output, (tuple, list)) else (output,)
        for o in outs:
            if isinstance(o, torch.Tensor) and o.is_floating_point():
                seen.add(o.dtype)
            logits = getattr(o, "logits", None)
            if isinstance(logits, torch.Tensor):
                seen.add(logits.dtype)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    convs = [{"messages": [{"role": "user", "content": f"Question {i} ?"},
                           {"role": "assistant", "content": "Réponse en français."}]} for i in range(4)]
    examples, _ = sft.build_examples(tok, convs, max_length=48)
    result = sft.train(model, examples, tok.pad_token_id, max_steps=2, batch_size=2, progress=False)
    for h in handles:
        h.remove()
    assert seen == {torch.float32}, f"activations hors float32 : {seen}"
    trained = [p for p in result["model"].parameters() if p.requires_grad]
    assert trained and all(p.dtype == torch.float32 for p in trained)
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in trained)
    assert all(torch.isfinite(torch.tensor(result["losses"])))


def test_no_hard_coded_bf16_compute():
    """Aucun chapitre ni module ne code en dur un calcul bfloat16 (seul atelier.runtime.config décide)."""
    allowed = {"runtime/config.py", "lora_nf4/memory.py", "embeddings/pooling.py",  # décision ; mesure des octets ;
               "lora_nf4/nf4.py"}                                                  # accumulateur ; validation
    pattern = re.compile(r"torch\.bfloat16|dtype=\"bfloat16\"|_is_avx512_bf16_supported|_is_mkldnn_bf16_supported")
    offenders = []
    for path in sorted((REPO / "code" / "atelier").rglob("*.py")):
        if path.relative_to(REPO / "code" / "atelier").as_posix() not in allowed and pattern.search(path.read_text(encoding="utf-8")):
            offenders.append(str(path.relative_to(REPO)))
    # Les cellules qui montrent le code d'un module autorisé (« # atelier.<module> : ») en sont une copie vérifiée.
    shown = re.compile(r"```\{code-cell\}[^\n]*\n(?::[^\n]*\n)*# atelier\.([\w.]+) :.*?\n```", re.DOTALL)
    allowed_modules = {name[:-3].replace("/", ".") for name in allowed}
    for path in sorted((REPO / "book").glob("[0-9][0-9]_*.md")):
        text = shown.sub(lambda m: "" if m[1] in allowed_modules else m[0], path.read_text(encoding="utf-8"))
        if pattern.search(text) or "set_num_threads" in text:
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"précision ou fils réglés hors d'atelier.runtime.config : {offenders}"


def test_stamp_records_precision(tmp_path, monkeypatch):
    from atelier.runtime import book

    monkeypatch.setenv("ATELIER_BUILD", str(tmp_path))
    ctx = book.setup("98_essai")
    rec = ctx.record()
    assert rec["precision"] in ("fp32", "bf16", "fp16") and rec["threads"] >= 1
