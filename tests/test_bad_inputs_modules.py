"""Batterie de mauvaises entrées, module par module (issue 19, point 1).

Chaque cas est un appel qu'un lecteur maladroit pourrait faire : mauvais type,
vide, NaN, hors limites, formes incompatibles, nom inconnu, fichier absent. Il
doit finir en ``TypeError`` ou ``ValueError`` dont le message, en français,
nomme le paramètre (ou l'objet fautif) : jamais une trace anglaise d'une
bibliothèque, jamais un résultat faux en silence.

``pytest tests/test_bad_inputs_modules.py -s -k tableau`` imprime le bilan
module / appels essayés / erreur française claire / autre ;
``python tests/test_bad_inputs_modules.py`` aussi (hors pytest).
"""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

NAN = math.nan
# Typographie française : une espace insécable (U+00A0), pas une espace ordinaire, avant « : ; ! ? ».
TYPO = re.compile(r"\S [:;!?](?=\s|$)")
# Mots qui signent une phrase française (un message anglais de bibliothèque n'en contient aucun).
FRENCH = (" de ", " des ", " du ", " doit", "reçu", " ne ", " pas ", " pour ", " une ", " ou ", "ligne ", "inconnu",
          "attendu", "introuvable", " vide")


def _t(*shape, dtype=torch.float32):
    return torch.ones(*shape, dtype=dtype)


def _anatomie():
    from atelier.anatomie import attention as A, generation as G, perplexity as P, tokenization as T

    q = torch.randn(2, 4, 5, 8)
    return "atelier.anatomie", [
        ("filter_logits(logits NaN)", lambda c: G.filter_logits(torch.tensor([1.0, NAN]), top_p=0.5), ValueError, "NaN"),
        ("filter_logits(logits +inf)", lambda c: G.filter_logits(torch.tensor([math.inf, 1.0])), ValueError, "+inf"),
        ("filter_logits(ligne toute -inf)", lambda c: G.filter_logits(torch.full((3,), -math.inf)), ValueError, "-inf"),
        ("filter_logits(temperature NaN)", lambda c: G.filter_logits(_t(3), temperature=NAN), ValueError, "temperature"),
        ("filter_logits(temperature '0.7')", lambda c: G.filter_logits(_t(3), temperature="0.7"), TypeError, "temperature"),
        ("filter_logits(top_p=1.5)", lambda c: G.filter_logits(_t(3), top_p=1.5), ValueError, "top_p"),
        ("filter_logits(top_p=0)", lambda c: G.filter_logits(_t(3), top_p=0), ValueError, "top_p"),
        ("filter_logits(logits entiers)", lambda c: G.filter_logits(torch.ones(3, dtype=torch.long)), TypeError, "logits"),
        ("filter_logits(previous_ids flottants)", lambda c: G.filter_logits(_t(3), repetition_penalty=1.2,
                                                                             previous_ids=[0.5]), TypeError, "previous_ids"),
        ("filter_logits(previous_ids texte)", lambda c: G.filter_logits(_t(3), repetition_penalty=1.2,
                                                                         previous_ids="ab"), TypeError, "previous_ids"),
        ("sdpa(tenseurs entiers)", lambda c: A.scaled_dot_product_attention(*(_t(1, 2, 3, dtype=torch.long),) * 3),
         TypeError, "flottant"),
        ("sdpa(scale NaN)", lambda c: A.scaled_dot_product_attention(q, q, q, scale=NAN), ValueError, "scale"),
        ("sdpa(lots différents)", lambda c: A.scaled_dot_product_attention(q, _t(3, 4, 5, 8), _t(3, 4, 5, 8)),
         ValueError, "incompatibles"),
        ("sdpa(têtes différentes)", lambda c: A.scaled_dot_product_attention(q, _t(2, 3, 5, 8), _t(2, 3, 5, 8)),
         ValueError, "incompatibles"),
        ("sdpa(dimension de tête)", lambda c: A.scaled_dot_product_attention(q, _t(2, 4, 5, 7), q), ValueError,
         "dimension de tête"),
        ("sdpa(types mêlés)", lambda c: A.scaled_dot_product_attention(q, q.double(), q), TypeError, "même type"),
        ("sdpa(masque de mauvaise forme)", lambda c: A.scaled_dot_product_attention(
            q, q, q, torch.ones(3, 3, dtype=torch.bool)), ValueError, "mask"),
        ("rotary_cos_sin(theta NaN)", lambda c: A.rotary_cos_sin(4, 4, NAN), ValueError, "theta"),
        ("rotary_cos_sin(length=-1)", lambda c: A.rotary_cos_sin(-1, 4, 1e4), ValueError, "length"),
        ("layer_queries_keys(layer=True)", lambda c: A.layer_queries_keys(c.gpt2, c.ids, True), ValueError, "layer"),
        ("layer_queries_keys(ids flottants)", lambda c: A.layer_queries_keys(c.gpt2, c.ids.float(), 0), TypeError,
         "input_ids"),
        ("token_nll(stride=0)", lambda c: P.token_nll(c.gpt2, c.ids, max_length=8, stride=0), ValueError, "stride"),
        ("token_nll(stride > fenêtre)", lambda c: P.token_nll(c.gpt2, c.ids, max_length=8, stride=20), ValueError,
         "stride"),
        ("token_nll(max_length=-3)", lambda c: P.token_nll(c.gpt2, c.ids, max_length=-3, stride=2), ValueError,
         "max_length"),
        ("token_nll(max_length > contexte)", lambda c: P.token_nll(c.gpt2, c.ids, max_length=1000, stride=4),
         ValueError, "max_length"),
        ("token_nll(texte vide)", lambda c: P.token_nll(c.gpt2, torch.zeros(1, 0, dtype=torch.long), max_length=8,
                                                         stride=4), ValueError, "input_ids"),
        ("token_nll(liste)", lambda c: P.token_nll(c.gpt2, [[1, 2]], max_length=8, stride=4), TypeError, "input_ids"),
        ("sliding_windows(stride=0)", lambda c: P.sliding_windows(20, 8, 0, 1), ValueError, "stride"),
        ("sliding_windows(length=0)", lambda c: P.sliding_windows(20, 0, 4, 1), ValueError, "length"),
        ("repeat_kv(n_rep=0)", lambda c: A.repeat_kv(q, 0), ValueError, "n_rep"),
        ("repeat_kv(n_rep=1.5)", lambda c: A.repeat_kv(q, 1.5), TypeError, "n_rep"),
        ("repeat_kv(x 3D)", lambda c: A.repeat_kv(_t(4, 5, 8), 2), TypeError, "(B, H_kv, T, D)"),
        ("count_words(nombre)", lambda c: T.count_words(3), TypeError, "text"),
        ("count_pairs(liste)", lambda c: T.count_pairs([("a", "b")]), TypeError, "words"),
        ("count_pairs(effectif négatif)", lambda c: T.count_pairs({("a", "b"): -1}), ValueError, "effectif"),
        ("merge_pair(paire de trois)", lambda c: T.merge_pair({("a", "b"): 1}, ("a", "b", "c")), TypeError, "pair"),
        ("merge_pair(paire en chaîne)", lambda c: T.merge_pair({("a", "b"): 1}, "ab"), TypeError, "pair"),
        ("train_bpe(n_merges=-1)", lambda c: T.train_bpe("le chat", -1), ValueError, "n_merges"),
    ]


def _nf4():
    from atelier.lora_nf4 import nf4 as N

    codes, absmax = N.quantize_nf4(torch.linspace(-1, 1, 10))
    return "atelier.lora_nf4.nf4", [
        ("pack_codes(code 16)", lambda c: N.pack_codes(torch.tensor([16, 1])), ValueError, "0…15"),
        ("pack_codes(code -1)", lambda c: N.pack_codes(torch.tensor([-1, 1])), ValueError, "0…15"),
        ("pack_codes(codes flottants)", lambda c: N.pack_codes(torch.tensor([1.5])), TypeError, "codes"),
        ("pack_codes(pad_code=99)", lambda c: N.pack_codes(torch.tensor([1]), pad_code=99), ValueError, "pad_code"),
        ("unpack_codes(liste)", lambda c: N.unpack_codes([1], 1), TypeError, "packed"),
        ("unpack_codes(n=2.5)", lambda c: N.unpack_codes(codes, 2.5), TypeError, "n"),
        ("dequantize_nf4(9 valeurs pour 10 codes)", lambda c: N.dequantize_nf4(codes, absmax, (9,)), ValueError,
         "bourrage"),
        ("dequantize_nf4(forme 'ab')", lambda c: N.dequantize_nf4(codes, absmax, "ab"), TypeError, "shape"),
        ("dequantize_nf4(forme négative)", lambda c: N.dequantize_nf4(codes, absmax, (-1,)), ValueError, "shape"),
        ("dequantize_nf4(absmax liste)", lambda c: N.dequantize_nf4(codes, [1.0], (10,)), TypeError, "absmax"),
        ("dequantize_nf4(dtype texte)", lambda c: N.dequantize_nf4(codes, absmax, (10,), dtype="float32"), TypeError,
         "dtype"),
        ("quantize_4bit(table non triée)", lambda c: N.quantize_4bit(_t(10), list(reversed(N.NF4_VALUES))),
         ValueError, "triée"),
        ("quantize_4bit(table de 17)", lambda c: N.quantize_4bit(_t(10), [i / 17 for i in range(17)]), ValueError,
         "16 valeurs"),
        ("quantize_4bit(table d'une valeur)", lambda c: N.quantize_4bit(_t(10), [0.0]), ValueError, "16 valeurs"),
        ("quantize_4bit(table hors [-1, 1])", lambda c: N.quantize_4bit(_t(10), [-2.0, 0.0, 2.0]), ValueError,
         "[-1, 1]"),
        ("quantize_4bit(block_size=0)", lambda c: N.quantize_4bit(_t(10), N.NF4_VALUES, 0), ValueError, "block_size"),
        ("quantize_nf4(poids NaN)", lambda c: N.quantize_nf4(torch.tensor([1.0, NAN])), ValueError, "NaN"),
        ("dequantize_absmax(autre block_size)", lambda c: N.dequantize_absmax(
            *N.double_quantize_absmax(torch.rand(600))[:2], 0.0, block_size=64), ValueError, "absmax2"),
        ("dequantize_absmax(offset NaN)", lambda c: N.dequantize_absmax(
            *N.double_quantize_absmax(torch.rand(600))[:2], NAN), ValueError, "offset"),
        ("bits_per_parameter(double_quant='oui')", lambda c: N.bits_per_parameter(64, "oui"), TypeError,
         "double_quant"),
    ]


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj, self.other = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)


def _apply_lora_no_side_effect(c):
    from atelier.lora_nf4 import lora as L

    net = _Net()
    try:
        L.apply_lora(net, ["k_proj"], 2, 4)
    finally:
        assert all(p.requires_grad for p in net.parameters()), "apply_lora a gelé le modèle avant de lever l'erreur"


def _lora_memory():
    from atelier.lora_nf4 import lora as L, memory as M

    cfg = dict(model_type="llama", vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2)
    lin = torch.nn.Linear(4, 6)
    return "atelier.lora_nf4.lora, memory", [
        ("LoRALinear(r > min(in, out))", lambda c: L.LoRALinear(lin, 5, 8), ValueError, "min(in_features"),
        ("LoRALinear(r=0)", lambda c: L.LoRALinear(lin, 0, 8), ValueError, "r (le rang)"),
        ("LoRALinear(alpha NaN)", lambda c: L.LoRALinear(lin, 2, NAN), ValueError, "alpha"),
        ("LoRALinear(r=2.0)", lambda c: L.LoRALinear(lin, 2.0, 8), TypeError, "r (le rang)"),
        ("apply_lora(cible absente, sans effet)", _apply_lora_no_side_effect, ValueError, "k_proj"),
        ("apply_lora(cible entière)", lambda c: L.apply_lora(_Net(), [3], 2, 4), TypeError, "target_modules"),
        ("apply_lora(modèle entier)", lambda c: L.apply_lora(3, ["q_proj"], 2, 4), TypeError, "model"),
        ("apply_lora(r > couche)", lambda c: L.apply_lora(_Net(), ["q_proj"], 5, 4), ValueError, "min(in_features"),
        ("lora_parameter_count(faute de frappe)", lambda c: L.lora_parameter_count(_Net(), 2, ["q_prj"]), ValueError,
         "q_prj"),
        ("finetune_memory(faute de frappe)", lambda c: M.finetune_memory(cfg, "lora", 4, ["q_prj"]), ValueError,
         "q_proj"),
        ("finetune_memory(grad_bytes=-1)", lambda c: M.finetune_memory(cfg, "lora", grad_bytes=-1), ValueError,
         "grad_bytes"),
        ("finetune_memory(optimizer_bytes='8')", lambda c: M.finetune_memory(cfg, "lora", optimizer_bytes="8"),
         TypeError, "optimizer_bytes"),
        ("finetune_memory(batch_size sans seq_len)", lambda c: M.finetune_memory(cfg, "lora", batch_size=4),
         ValueError, "seq_len"),
        ("weights_memory(chemin inexistant)", lambda c: M.weights_memory("/chemin/inexistant"), ValueError,
         "introuvable"),
        ("weights_memory(model_type inconnu)", lambda c: M.weights_memory({"model_type": "inconnu"}), ValueError,
         "model_type"),
        ("activation_memory(bytes_per_value=0)", lambda c: M.activation_memory(cfg, 1, 4, bytes_per_value=0),
         ValueError, "bytes_per_value"),
        ("tensor_bytes(3)", lambda c: M.tensor_bytes(3), TypeError, "model"),
        ("measure_loaded(chemin inexistant)", lambda c: M.measure_loaded("/chemin/inexistant", "fp32"), ValueError,
         "introuvable"),
    ]


def _dialogues_chat():
    from atelier.lora_nf4 import chat as C, sft as S

    msgs = [{"role": "user", "content": "Bonjour"}]
    return "atelier.lora_nf4.dialogues, chat, sft", [
        ("load_dialogues(fichier Latin-1)", lambda c: C.load_dialogues(c.latin1), ValueError, "ligne 1"),
        ("load_dialogues(JSON invalide)", lambda c: C.load_dialogues(c.bad_json), ValueError, "ligne 2"),
        ("load_dialogues(JSON trop profond)", lambda c: C.load_dialogues(c.deep), ValueError, "ligne 1"),
        ("load_dialogues(chemin entier)", lambda c: C.load_dialogues(3), TypeError, "path"),
        ("split_by_first_prompt(pas des conversations)", lambda c: C.split_by_first_prompt([1, 2], 0.5), TypeError,
         "conversations"),
        ("history_to_messages([], None)", lambda c: C.history_to_messages([], None), ValueError, "message"),
        ("history_to_messages(message entier)", lambda c: C.history_to_messages([], 3), TypeError, "texte"),
        ("history_to_messages(system_prompt entier)", lambda c: C.history_to_messages([], "a", 3), TypeError,
         "system_prompt"),
        ("history_to_messages(format tuples)", lambda c: C.history_to_messages([["q", "r"]], "a"), TypeError,
         "history"),
        ("reply(temperature NaN)", lambda c: C.reply(*c.chat, msgs, temperature=NAN), ValueError, "temperature"),
        ("reply(temperature '0.7')", lambda c: C.reply(*c.chat, msgs, temperature="0.7"), TypeError, "temperature"),
        ("reply(messages texte)", lambda c: C.reply(*c.chat, "Bonjour"), TypeError, "messages"),
        ("reply(messages vide)", lambda c: C.reply(*c.chat, []), ValueError, "messages"),
        ("reply(rôle inconnu)", lambda c: C.reply(*c.chat, [{"role": "robot", "content": "x"}]), ValueError, "rôle"),
        ("reply(message sans contenu)", lambda c: C.reply(*c.chat, [{"role": "user"}]), ValueError, "content"),
        ("load_model(chemin inexistant)", lambda c: C.load_model("/chemin/inexistant"), ValueError, "introuvable"),
        ("build_examples(texte)", lambda c: S.build_examples(c.chat[1], "abc"), TypeError, "conversations"),
        ("collate([])", lambda c: S.collate([], 0), ValueError, "examples"),
        ("collate(pad_id texte)", lambda c: S.collate([{"input_ids": [1], "labels": [1]}], "a"), TypeError, "pad_id"),
    ]


def _embeddings():
    from atelier.embeddings import pooling as E

    class Fake:
        def encode(self, texts):
            return np.ones((len(texts), 2))

    h = torch.randn(2, 3, 4)
    return "atelier.embeddings", [
        ("encode([])", lambda c: E.encode([], Fake()), ValueError, "vide"),
        ("encode('texte seul')", lambda c: E.encode("une phrase", Fake()), TypeError, "chaîne seule"),
        ("encode([3])", lambda c: E.encode([3], Fake()), ValueError, "élément 0"),
        ("encode(max_length=0)", lambda c: E.encode(["a"], Fake(), max_length=0), ValueError, "max_length"),
        ("encode(normalize='non')", lambda c: E.encode(["a"], Fake(), normalize="non"), TypeError, "normalize"),
        ("encode(modèle None)", lambda c: E.encode(["a"], None), TypeError, "Modèle non pris en charge"),
        ("mean_pool(masque de mauvaise forme)", lambda c: E.mean_pool(h, torch.ones(2, 4)), ValueError,
         "Formes incompatibles"),
        ("mean_pool(masque 0,5)", lambda c: E.mean_pool(h, torch.full((2, 3), 0.5)), ValueError, "attention_mask"),
        ("mean_pool(ligne sans jeton)", lambda c: E.mean_pool(h, torch.tensor([[1, 1, 1], [0, 0, 0]])), ValueError,
         "entièrement nul"),
        ("cls_pool(masque de mauvaise forme)", lambda c: E.cls_pool(h, torch.ones(3, 3)), ValueError,
         "Formes incompatibles"),
        ("cosine_matrix(dimensions)", lambda c: E.cosine_matrix(np.ones((2, 3)), np.ones((2, 4))), ValueError,
         "Formes incompatibles"),
    ]


def _camembert():
    from atelier.camembert import deberta as D, nli as N, pretraining as P

    q = torch.randn(1, 2, 3, 4)
    return "atelier.camembert", [
        ("c2p_term(dimension de tête)", lambda c: D.c2p_term(q, torch.randn(2, 5, 3), torch.zeros(3, 3, dtype=torch.long)),
         ValueError, "pos_key"),
        ("c2p_term(idx flottant)", lambda c: D.c2p_term(q, torch.randn(2, 5, 4), torch.zeros(3, 3)), TypeError, "idx"),
        ("c2p_term(idx hors table)", lambda c: D.c2p_term(q, torch.randn(2, 5, 4), torch.full((3, 3), 9)), ValueError,
         "idx"),
        ("p2c_term(liste)", lambda c: D.p2c_term([1], torch.randn(2, 5, 4), torch.zeros(3, 3, dtype=torch.long)),
         TypeError, "k"),
        ("relative_positions(bucket_size texte)", lambda c: D.relative_positions(3, 3, "a", 5), TypeError,
         "bucket_size"),
        ("log_bucket_position(distances flottantes)", lambda c: D.log_bucket_position(torch.tensor([1.5]), 8, 16),
         TypeError, "relative_pos"),
        ("make_blocks(tokeniseur None)", lambda c: P.make_blocks(None, "texte"), TypeError, "tokenizer"),
        ("encoder_configs(hidden non multiple de heads)", lambda c: P.encoder_configs(200, hidden=130, heads=4),
         ValueError, "heads"),
        ("encoder_configs(layers=0)", lambda c: P.encoder_configs(200, layers=0), ValueError, "layers"),
        ("masked_batches(blocs flottants)", lambda c: P.masked_batches(_t(2, 8), None, 2, 0), TypeError, "blocks"),
        ("unigram_loss(lots vides)", lambda c: P.unigram_loss(_t(2, 8, dtype=torch.long), [], 10), ValueError,
         "batches"),
        ("tokens_to_floor(floor NaN)", lambda c: P.tokens_to_floor([], NAN), ValueError, "floor"),
        ("published_config(inconnu)", lambda c: N.published_config("inconnu"), ValueError, "inconnu"),
        ("scores_with_intervals(NaN)", lambda c: N.scores_with_intervals([0, 1], [0, NAN]), ValueError, "y_pred"),
        ("training_arguments(num_epochs=0)", lambda c: N.training_arguments("/tmp/x", num_epochs=0), ValueError,
         "num_epochs"),
        ("parameter_groups(3)", lambda c: N.parameter_groups(3), TypeError, "model"),
    ]


def _finetuning():
    from atelier import finetuning as F
    from atelier.finetuning import fewshot

    cfg = F.FinetuneConfig()
    lin = torch.nn.Linear(2, 1)
    groups = [{"params": list(lin.parameters()), "lr": 1e-3}]
    loss = lambda idx: lin(torch.ones(len(idx), 2)).sum()  # noqa: E731
    loop = dict(epochs=1, batch_size=2, seed=0, warmup_ratio=0.1, weight_decay=0.0)
    return "atelier.finetuning", [
        ("FinetuneConfig(lr='1e-3')", lambda c: F.FinetuneConfig(lr="1e-3"), TypeError, "lr"),
        ("dir_size_mb(dossier absent)", lambda c: F.dir_size_mb("/dossier/absent"), ValueError, "/dossier/absent"),
        ("FinetuneConfig(weight_decay NaN)", lambda c: F.FinetuneConfig(weight_decay=NAN), ValueError, "weight_decay"),
        ("FinetuneConfig(freeze_layers=True)", lambda c: F.FinetuneConfig(freeze_layers=True), TypeError,
         "freeze_layers"),
        ("FinetuneConfig(lora_targets='query')", lambda c: F.FinetuneConfig(lora_targets="query"), TypeError,
         "lora_targets"),
        ("FinetuneConfig(prefix=3)", lambda c: F.FinetuneConfig(prefix=3), TypeError, "prefix"),
        ("same_budget(config dict)", lambda c: F.same_budget({}, "setfit", 10), TypeError, "config"),
        ("training_passes(n_train=-1)", lambda c: F.training_passes(cfg, "full", -1), ValueError, "n_train"),
        ("check_approach(inconnue)", lambda c: F.check_approach("lorra"), ValueError, "inconnue"),
        ("sample_per_class(k=0)", lambda c: fewshot.sample_per_class(c.df, 0), ValueError, "k"),
        ("length_grouped_batches(batch_size=0)", lambda c: F.length_grouped_batches([1, 2], 0, torch.Generator()),
         ValueError, "batch_size"),
        ("length_grouped_batches([])", lambda c: F.length_grouped_batches([], 2, torch.Generator()), ValueError,
         "lengths"),
        ("contrastive_pairs(iterations=0)", lambda c: F.contrastive_pairs([0, 1, 0, 1], iterations=0), ValueError,
         "iterations"),
        ("train_loop(epochs=0)", lambda c: F.train_loop(loss, groups, 4, **{**loop, "epochs": 0}), ValueError, "epochs"),
        ("train_loop(warmup_ratio=2)", lambda c: F.train_loop(loss, groups, 4, **{**loop, "warmup_ratio": 2}),
         ValueError, "warmup_ratio"),
        ("train_loop(lengths de mauvaise taille)", lambda c: F.train_loop(loss, groups, 4, lengths=[1, 2], **loop),
         ValueError, "lengths"),
        ("train_loop(max_grad_norm NaN)", lambda c: F.train_loop(loss, groups, 4, max_grad_norm=NAN, **loop),
         ValueError, "max_grad_norm"),
        ("embed(encodeur None)", lambda c: F.embed(None, ["a"]), TypeError, "encoder"),
        ("load_encoder(chemin inexistant)", lambda c: F.load_encoder("/chemin/inexistant"), ValueError, "introuvable"),
        ("pair_cosines(embeddings nuls)", lambda c: F.pair_cosines(lambda x: np.zeros((len(x), 2)), ["a"], ["b"]),
         ValueError, "nuls"),
        ("sts_spearman(notes NaN)", lambda c: F.sts_spearman(lambda x: np.random.rand(len(x), 2), ["a", "b"],
                                                             ["b", "c"], [NAN, 1]), ValueError, "scores"),
        ("probe_accuracy(une seule classe)", lambda c: F.probe_accuracy(np.random.rand(10, 2), [0] * 10), ValueError,
         "classes"),
        ("probe_accuracy(C NaN)", lambda c: F.probe_accuracy(np.random.rand(10, 2), [0, 1] * 5, C=NAN), ValueError,
         "C"),
        ("battery(tâche mal formée)", lambda c: F.battery(lambda x: np.ones((len(x), 2)), {"t": {}}), ValueError,
         "tasks"),
        ("set_checkpointing(3)", lambda c: F.set_checkpointing(3, True), TypeError, "model"),
    ]


GROUPS = (_anatomie, _nf4, _lora_memory, _dialogues_chat, _embeddings, _camembert, _finetuning)


def all_cases():
    """(module, libellé, appel, erreur attendue, fragment du message) de toute la batterie."""
    return [(module, *case) for group in GROUPS for module, cases in [group()] for case in cases]


CASES = all_cases()


def make_context(tmp, chat_path=None):
    """Ce dont les appels ont besoin : petit GPT-2, fichiers de dialogues fautifs, modèle de conversation minuscule."""
    import pandas as pd

    from conftest import tiny_gpt2

    latin1 = tmp / "latin1.jsonl"
    latin1.write_bytes('{"messages": [{"role": "user", "content": "été"}]}\n'.encode("latin-1"))
    bad_json = tmp / "mauvais.jsonl"
    bad_json.write_text('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
                        '{"messages": [}\n', encoding="utf-8")
    deep = tmp / "profond.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    ctx = SimpleNamespace(gpt2=tiny_gpt2(), ids=torch.randint(0, 128, (1, 20), generator=torch.Generator().manual_seed(0)),
                          latin1=latin1, bad_json=bad_json, deep=deep, chat=None,
                          df=pd.DataFrame({"text": ["a", "b", "c", "d"], "label": ["x", "y", "x", "y"]}))
    if chat_path is not None:
        from atelier.lora_nf4.chat import load_model

        ctx.chat = load_model(chat_path)
    return ctx


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, tiny_chat_path):
    return make_context(tmp_path_factory.mktemp("mauvaises-entrees"), tiny_chat_path)


def outcome(call, ctx, error, fragment) -> tuple[str, str]:
    """(« clair » ou « autre », détail) pour un appel : clair = l'erreur attendue, française, qui nomme le fragment."""
    try:
        result = call(ctx)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        ok = isinstance(exc, error) and fragment in message and any(w in message for w in FRENCH)
        if ok and TYPO.search(message.split("reçu")[0]):  # la valeur reçue (repr) n'est pas du texte à corriger
            return "autre", f"typographie (espace ordinaire avant « : ; ! ? ») : {message[:200]}"
        return ("clair" if ok else "autre"), f"{type(exc).__name__} : {message[:200]}"
    except Exception as exc:  # noqa: BLE001 - tout le reste est un défaut à signaler
        return "autre", f"{type(exc).__name__} : {str(exc)[:200]}"
    return "autre", f"aucune erreur, résultat {result!r}"[:200]


@pytest.mark.parametrize("module, name, call, error, fragment", CASES, ids=[c[1] for c in CASES])
def test_bad_input_gets_a_clear_french_error(ctx, module, name, call, error, fragment):
    verdict, detail = outcome(call, ctx, error, fragment)
    assert verdict == "clair", f"{module} · {name} : {detail}"


def table(ctx) -> list[tuple[str, int, int, int]]:
    """Bilan par module : (module, appels essayés, erreur française claire, autre)."""
    rows: dict[str, list[int]] = {}
    for module, _name, call, error, fragment in CASES:
        verdict, _ = outcome(call, ctx, error, fragment)
        row = rows.setdefault(module, [0, 0, 0])
        row[0] += 1
        row[1 if verdict == "clair" else 2] += 1
    return [(m, *r) for m, r in rows.items()]


def print_table(rows) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{'module':<{width}}  essayés  clairs  autres")
    for module, tried, clear, other in rows:
        print(f"{module:<{width}}  {tried:>7}  {clear:>6}  {other:>6}")
    print(f"{'total':<{width}}  {sum(r[1] for r in rows):>7}  {sum(r[2] for r in rows):>6}  {sum(r[3] for r in rows):>6}")


def test_tableau_des_mauvaises_entrees(ctx):
    rows = table(ctx)
    print_table(rows)
    assert sum(r[3] for r in rows) == 0


if __name__ == "__main__":  # python tests/test_bad_inputs_modules.py : le tableau seul
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from atelier.lora_nf4.sft import make_tiny_chat_model

    with tempfile.TemporaryDirectory() as d:
        print_table(table(make_context(Path(d), make_tiny_chat_model(Path(d) / "chat"))))
