"""Périphérique et précision : GPU présent ou non, bfloat16 matériel ou non, tenseurs sur le périphérique du modèle.

Il n'y a pas de GPU ici : les sondes (``torch.cuda.is_available``, ``torch.cuda.is_bf16_supported``,
``atelier.runtime.config.cpu_native_bf16``) sont remplacées. Le T4 est simulé fidèlement :
``is_bf16_supported()`` y répond oui (bf16 émulé) et ``is_bf16_supported(including_emulation=False)`` non.
Pour voir où vont les tenseurs, les modèles reçoivent des paramètres sur le périphérique « meta »
(formes sans données) : un tenseur laissé sur le CPU s'y distingue.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from atelier.camembert import pretraining as pt
from atelier.lora_nf4 import chat, memory, sft
from atelier.runtime import config

TEXT = "\n\n".join(f"Le chat dort sur la table numéro {i} ; la pluie tombe sur le toit et le vent souffle." for i in range(60))


def _t4_bf16(device=None, including_emulation=True):
    return bool(including_emulation)  # T4 : bf16 seulement émulé


@pytest.fixture
def t4(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", _t4_bf16)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.fixture
def a100(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.fixture
def cpu_fp32(monkeypatch):
    monkeypatch.delenv("ATELIER_FP32", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(config, "cpu_native_bf16", lambda: False)


@pytest.fixture
def cpu_bf16(monkeypatch):
    monkeypatch.delenv("ATELIER_FP32", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(config, "cpu_native_bf16", lambda: True)


HARDWARE = {  # machine -> (périphérique, type de calcul)
    "t4": ("cuda", torch.float16),
    "a100": ("cuda", torch.bfloat16),
    "cpu_fp32": ("cpu", torch.float32),
    "cpu_bf16": ("cpu", torch.bfloat16),
}


# ----------------------------------------------------------------------------- décisions de config
@pytest.mark.parametrize("machine", HARDWARE)
def test_device_and_compute_dtype_follow_the_hardware(request, machine):
    request.getfixturevalue(machine)
    kind, dtype = HARDWARE[machine]
    assert config.default_device() == torch.device(kind)
    assert config.compute_dtype() == dtype and config.compute_dtype(kind) == dtype
    assert config.precision_name() == {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]
    assert config.use_bf16() == (dtype == torch.bfloat16)


def test_a_t4_is_not_taken_for_a_bf16_card(t4):
    """Sur un T4, ``is_bf16_supported()`` répond oui (émulation) : le livre doit quand même choisir fp16."""
    assert torch.cuda.is_bf16_supported()  # la sonde naïve se trompe
    assert not config.gpu_native_bf16()
    assert config.compute_dtype("cuda:0") == torch.float16
    assert config.precision_reason("cuda") == "fp16 (GPU sans bfloat16)"
    ctx = config.autocast("cuda")
    assert ctx.device == "cuda" and ctx.fast_dtype == torch.float16


def test_resolve_precision(t4, monkeypatch):
    assert config.resolve_precision("auto") == torch.float16
    assert config.resolve_precision("fp16", "cuda") == torch.float16
    assert config.resolve_precision("fp32", "cuda") == torch.float32
    with pytest.raises(ValueError, match="bfloat16 matériel"):
        config.resolve_precision("bf16", "cuda")
    monkeypatch.setattr(config, "cpu_native_bf16", lambda: False)
    assert config.resolve_precision("auto", "cpu") == torch.float32
    assert config.resolve_precision("bf16", "cpu") == torch.bfloat16  # demandé explicitement : respecté
    with pytest.raises(ValueError, match="fp16 demande un GPU"):
        config.resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="Précision inconnue"):
        config.resolve_precision("fp8")


@pytest.mark.parametrize("machine, active", [("t4", True), ("a100", False), ("cpu_fp32", False), ("cpu_bf16", False)])
def test_grad_scaler_only_for_float16(request, machine, active):
    request.getfixturevalue(machine)
    assert config.grad_scaler().is_enabled() is active
    assert not config.grad_scaler(enabled=False).is_enabled()
    assert not config.grad_scaler(dtype=torch.float32).is_enabled()
    assert config.grad_scaler(dtype=torch.float16).is_enabled()  # le type réel du modèle l'emporte


def test_model_device_and_to_device():
    from transformers import BatchEncoding

    with torch.device("meta"):
        on_meta = nn.Linear(2, 2)
    assert config.model_device(on_meta).type == "meta"
    assert config.model_device(nn.ReLU()) == torch.device("cpu")  # ni paramètre ni tampon
    only_buffer = nn.Module()
    only_buffer.register_buffer("b", torch.zeros(1, device="meta"))
    assert config.model_device(only_buffer).type == "meta"
    moved = config.to_device(BatchEncoding({"input_ids": torch.ones(1, 3), "n": 3}), "meta")
    assert moved["input_ids"].device.type == "meta" and moved["n"] == 3
    with pytest.raises(TypeError, match="dictionnaire"):
        config.to_device([torch.ones(1)], "cpu")


# ----------------------------------------------------------------------------- Trainer (chapitre 03)
def _transformers(*names):
    """Le module ``transformers`` où ``from transformers import …`` lira ``names`` (il se remplace au premier accès)."""
    import sys

    import transformers

    for name in names:
        getattr(transformers, name)
    return sys.modules["transformers"]


@pytest.mark.parametrize("machine, fp16, bf16, use_cpu", [
    ("t4", True, False, False), ("a100", False, True, False), ("cpu_fp32", False, False, True),
    ("cpu_bf16", False, True, True)])
def test_trainer_precision_flags(request, monkeypatch, tmp_path, machine, fp16, bf16, use_cpu):
    from atelier.camembert import nli

    transformers = _transformers("TrainingArguments")  # le vrai, importé avant de simuler la machine
    request.getfixturevalue(machine)

    class FakeArguments(SimpleNamespace):  # sans GPU, les vrais TrainingArguments refuseraient fp16
        @property
        def train_batch_size(self):
            return self.per_device_train_batch_size

    monkeypatch.setattr(transformers, "TrainingArguments", FakeArguments)
    args = nli.training_arguments(tmp_path, num_epochs=1, batch_size=8)
    assert (args.fp16, args.bf16, args.use_cpu) == (fp16, bf16, use_cpu)


# ----------------------------------------------------------------------------- chargement du modèle de chat
class _Loaded:
    calls: list = []

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        cls.calls.append(kwargs)
        return SimpleNamespace(eval=lambda: "modèle")


@pytest.fixture
def fake_hf(monkeypatch):
    transformers = _transformers("AutoTokenizer", "AutoModelForCausalLM")
    _Loaded.calls = []
    tokenizer = SimpleNamespace(pad_token_id=0, eos_token="</s>")
    monkeypatch.setattr(transformers, "AutoTokenizer", SimpleNamespace(from_pretrained=lambda *a, **k: tokenizer))
    monkeypatch.setattr(transformers, "AutoModelForCausalLM", _Loaded)
    return _Loaded.calls


@pytest.mark.parametrize("machine", HARDWARE)
def test_chat_model_loads_on_the_gpu_in_nf4(request, fake_hf, machine):
    request.getfixturevalue(machine)
    kind, dtype = HARDWARE[machine]
    chat.load_model("modele", four_bit=True)
    kwargs = fake_hf[-1]
    assert kwargs["device_map"] == {"": torch.device(kind)}
    assert kwargs["dtype"] == dtype
    qc = kwargs["quantization_config"]
    assert qc.load_in_4bit and qc.bnb_4bit_quant_type == "nf4" and qc.bnb_4bit_compute_dtype == dtype
    chat.load_model("modele", four_bit=False, device="cpu")
    assert fake_hf[-1]["device_map"] == {"": torch.device("cpu")} and "quantization_config" not in fake_hf[-1]
    assert fake_hf[-1]["dtype"] == config.compute_dtype("cpu")
    with pytest.raises(TypeError, match="device"):
        chat.load_model("modele", device=0.5)


@pytest.mark.parametrize("machine, argv, four_bit", [
    ("t4", [], True), ("a100", [], True), ("cpu_fp32", [], False),
    ("t4", ["--no-four-bit"], False), ("cpu_bf16", ["--four-bit"], True)])
def test_chat_ui_defaults_to_nf4_when_a_gpu_is_present(request, monkeypatch, machine, argv, four_bit):
    request.getfixturevalue(machine)
    seen = {}
    monkeypatch.setattr(chat, "load_model", lambda *a, **k: seen.update(k) or ("modèle", "tokeniseur"))
    monkeypatch.setattr(chat, "build_app", lambda *a, **k: SimpleNamespace(queue=lambda **_: None, launch=lambda **_: None))
    chat.main(["--model", "modele", *argv])
    assert seen["four_bit"] is four_bit


# ----------------------------------------------------------------------------- la recette en ligne de commande
def test_sft_cli_defaults():
    args = sft.parser().parse_args(["--model", "m", "--output", "o"])
    assert (args.precision, args.gradient_checkpointing, args.no_4bit) == ("auto", True, False)
    assert (args.batch_size, args.max_length, args.r) == (4, 512, 16)
    assert not sft.parser().parse_args(["--no-gradient-checkpointing"]).gradient_checkpointing
    with pytest.raises(SystemExit):
        sft.parser().parse_args(["--precision", "fp8"])
    text = sft.parser().format_help()
    assert "--dry-estimate" in text and "T4" in text and "--precision" in text


def test_sft_dry_estimate_shows_the_defaults_fit_a_t4(t4, capsys):
    est = sft.main(["--dry-estimate"])
    out = capsys.readouterr().out
    assert est["precision"] == "fp16" and "Mistral-7B" in out and "tient dans" in out
    assert est["total_bytes"] <= memory.T4_BUDGET_BYTES
    same = memory.finetune_memory(memory.MISTRAL_7B, "qlora", r=16, batch_size=4, seq_len=512)  # fp16 : 2 octets
    assert est["total_bytes"] == same["total_bytes"]  # la calculatrice du chapitre 04, pas une autre formule
    # Sans gradient checkpointing, les séquences du document (1 024 jetons) ne tiennent plus.
    big = sft.main(["--dry-estimate", "--no-gradient-checkpointing", "--max-length", "1024"])
    assert big["total_bytes"] > memory.T4_BUDGET_BYTES and "dépasse" in capsys.readouterr().out
    with pytest.raises(ValueError, match="bfloat16"):
        sft.main(["--dry-estimate", "--precision", "bf16"])


def test_sft_dry_estimate_in_float32_counts_four_bytes(cpu_fp32):
    est = sft.main(["--dry-estimate", "--no-4bit"])
    assert est["precision"] == "fp32"
    assert est["weights_bytes"] == memory.weights_memory(memory.MISTRAL_7B, "fp32")["total_bytes"]


class _Stop(Exception):
    pass


@pytest.mark.parametrize("argv, dtype", [([], torch.bfloat16), (["--precision", "fp32"], torch.float32)])
def test_sft_cli_loads_on_the_accelerator_device(cpu_bf16, monkeypatch, tmp_path, argv, dtype):
    data = tmp_path / "dialogues.jsonl"
    data.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": f"Question {i} ?"},
                                                       {"role": "assistant", "content": "Réponse."}]})
                              for i in range(10)), encoding="utf-8")
    seen = {}

    def fake_load(*a, **k):
        seen.update(k)
        raise _Stop

    monkeypatch.setattr(sft, "load_model", fake_load)
    with pytest.raises(_Stop):
        sft.main(["--model", "m", "--output", str(tmp_path / "out"), "--data", str(data), *argv])
    assert seen["compute_dtype"] == dtype and seen["device"] == torch.device("cpu") and seen["four_bit"] is True


def test_sft_cli_still_needs_model_and_output(capsys):
    with pytest.raises(SystemExit):
        sft.main(["--model", "m"])
    assert "--output" in capsys.readouterr().err


@pytest.mark.parametrize("dtype, scaled", [(torch.float16, True), (torch.float32, False)])
def test_sft_train_scales_the_loss_in_float16(tiny_chat_path, monkeypatch, dtype, scaled):
    from atelier.adapters import add_lora

    made = []
    real = sft.grad_scaler
    monkeypatch.setattr(sft, "grad_scaler", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    model, tok = chat.load_model(tiny_chat_path, four_bit=False, compute_dtype=dtype, device="cpu")
    model = add_lora(model, sft.DEFAULT_TARGETS, task="CAUSAL_LM", r=4, alpha=8)
    convs = [{"messages": [{"role": "user", "content": f"Question {i} ?"},
                           {"role": "assistant", "content": "Réponse en français."}]} for i in range(4)]
    examples, _ = sft.build_examples(tok, convs, max_length=48)
    result = sft.train(model, examples, tok.pad_token_id, max_steps=2, batch_size=2, progress=False)
    assert len(made) == 1 and made[0].is_enabled() is scaled
    if scaled:  # deux pas passés par le GradScaler, sans débordement
        assert made[0].state_dict()["_growth_tracker"] == 2
    assert all(torch.isfinite(torch.tensor(result["losses"])))


# ----------------------------------------------------------------------------- tenseurs sur le périphérique du modèle
class Recorder(nn.Module):
    """Un « modèle » dont les poids sont sur meta : il note le périphérique de chaque entrée reçue."""

    def __init__(self, vocab_size: int = 8):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1, device="meta"))  # premier paramètre : le périphérique du modèle
        self.w = nn.Parameter(torch.ones(1))  # de quoi calculer une vraie perte
        self.config = SimpleNamespace(pad_token_id=0, model_type="roberta")
        self.vocab_size, self.seen = vocab_size, []

    def forward(self, **inputs):
        self.seen.append({k: v.device.type for k, v in inputs.items() if isinstance(v, torch.Tensor)})
        b, t = inputs["input_ids"].shape
        return SimpleNamespace(loss=(self.w ** 2).sum(), logits=torch.zeros(b, t, self.vocab_size))


@pytest.fixture(scope="module")
def tokenizer():
    return pt.train_tokenizer(TEXT, vocab_size=200)


def test_position_ids_on_the_model_device(tokenizer):
    cfg = pt.encoder_configs(len(tokenizer), seq_len=16, hidden=16, layers=1, heads=2, intermediate=32)["RoBERTa"]
    with torch.device("meta"):
        model = pt.build_model(cfg)
    pos = pt.position_ids(model, 2, 5, offset=3)
    assert pos.device.type == "meta" and pos.shape == (2, 5)


def test_mlm_loss_and_pretrain_feed_the_model_device(tokenizer):
    blocks = pt.make_blocks(tokenizer, TEXT, seq_len=16)
    batches = pt.masked_batches(blocks, tokenizer, batch_size=2, seed=0)[:3]
    model = Recorder()
    pt.mlm_loss(model, batches, offset=2)
    hist = pt.pretrain(model, batches, batches[:1], warmup=1, eval_every=2, progress=False)
    assert len(hist) > 1 and model.seen
    assert {"input_ids", "attention_mask", "labels", "position_ids"} <= set(model.seen[0])
    assert {d for call in model.seen for d in call.values()} == {"meta"}


def test_article_probe_feeds_the_model_device(tokenizer):
    blocks = pt.make_blocks(tokenizer, TEXT, seq_len=16)[:4]
    ids = pt.article_ids(tokenizer, ("le", "la"))
    model = Recorder(vocab_size=len(tokenizer))
    truth, guess = pt.article_probe(model, blocks, tokenizer, words=("le", "la"), batch_size=2)
    assert {d for call in model.seen for d in call.values()} == {"meta"}
    expected = [0 if t == ids[0] else 1 for t in blocks[torch.isin(blocks, torch.tensor(ids))].tolist()]
    assert truth.tolist() == expected and len(guess) == len(truth)


def test_classifier_head_and_batches_follow_the_encoder(tokenizer):
    from transformers import BertConfig, BertModel

    from atelier.finetuning import FinetuneConfig
    from atelier.finetuning.classifiers import MeanPoolClassifier, TorchClassifier

    with torch.device("meta"):
        backbone = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64))
    assert MeanPoolClassifier(backbone, 3).head.weight.device.type == "meta"
    class FakeEncoder:  # ce que TorchClassifier lit d'un SentenceTransformer
        def __init__(self):
            self.tokenizer = tokenizer

        def __getitem__(self, i):
            return SimpleNamespace(auto_model=backbone)

    clf = TorchClassifier(FakeEncoder(), 3, FinetuneConfig(), "full")
    batch = clf._batch(["le chat dort", "la pluie tombe sur le toit"])
    assert {v.device.type for v in batch.values()} == {"meta"}


@pytest.fixture(scope="module")
def tiny_encoder_dir(tmp_path_factory, tokenizer):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel

    root = tmp_path_factory.mktemp("tiny-st")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    SentenceTransformer(modules=[Transformer(str(root / "bert"), max_seq_length=32), Pooling(16, "mean")],
                        device="cpu").save(str(root / "st"))
    return root / "st"


@pytest.mark.parametrize("machine, device, expected", [("t4", None, "cuda"), ("cpu_fp32", None, "cpu"),
                                                       ("t4", "cpu", "cpu")])
def test_load_encoder_defaults_to_the_gpu(request, monkeypatch, tiny_encoder_dir, machine, device, expected):
    import sentence_transformers

    from atelier import finetuning as F

    request.getfixturevalue(machine)
    real, seen = sentence_transformers.SentenceTransformer, []

    def spy(*a, device=None, **k):  # on note le périphérique demandé, on charge sur le CPU (pas de GPU ici)
        seen.append(device)
        return real(*a, device="cpu", **k)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", spy)
    encoder = F.load_encoder(tiny_encoder_dir, device=device)
    assert seen == [expected, expected]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # le calcul qui suit se fait vraiment sur CPU
    assert F.embed(encoder, ["le chat dort"], max_length=16).shape == (1, 16)


def test_rope_tables_follow_the_query_device():
    """RoPE : cosinus et sinus créés sur le périphérique demandé, celui des requêtes dans attention_weights."""
    from atelier.anatomie import attention as A

    cos, sin = A.rotary_cos_sin(5, 8, 10_000.0, device="meta")
    assert cos.device.type == "meta" and sin.device.type == "meta" and cos.shape == (5, 8)
    q = torch.randn(1, 2, 5, 8, device="meta")
    w = A.attention_weights(q, q, scale=8 ** -0.5, rope_theta=10_000.0)
    assert w.device.type == "meta"


def test_twins_are_built_on_the_default_device(monkeypatch):
    """Les jumeaux du chapitre 03 naissent sur le périphérique du livre (le GPU s'il y en a un)."""
    from transformers import RobertaConfig

    from atelier.camembert import pretraining as pt

    monkeypatch.setattr(pt, "default_device", lambda: torch.device("meta"))
    model = pt.build_model(RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32, max_position_embeddings=40))
    assert next(model.parameters()).device.type == "meta"
