"""Tests de atelier.camembert.nli : étiquettes, jeu de données, LoRA, décomptes, Trainer, prédiction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

from atelier.adapters import add_lora
from atelier.camembert import lpft, nli
from atelier.labels import encode_labels

WORDS = "le la un une chat chien dort mange court il elle est pas ne dans jardin maison lyon europe vit".split()


@pytest.fixture(scope="module")
def tokenizer():
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]")


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return BertForSequenceClassification(_tiny_config()).eval()


def _tiny_config(layers: int = 2) -> BertConfig:
    return BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64, num_labels=3)


def _lora_model_and_data(tokenizer):
    """Petit BERT à 3 classes avec LoRA, et un jeu de 16 paires (graine fixée)."""
    torch.manual_seed(0)
    model = add_lora(BertForSequenceClassification(_tiny_config()), ["query", "value"], task="SEQ_CLS", r=2)
    return model, nli.make_dataset(pd.concat([_frame()] * 4, ignore_index=True), tokenizer)


def _frame():
    return pd.DataFrame({
        "premise": ["le chat dort dans la maison", "il vit dans le jardin", "elle mange", "le chien court"],
        "hypothesis": ["le chat dort", "il ne vit pas dans le jardin", "elle dort", "un chien"],
        "label": ["entailment", "contradiction", "neutral", "entailment"],
    })


def test_nli_labels_are_defined_once():
    from atelier.assets import data_catalog

    assert nli.LABELS is data_catalog.NLI_LABELS
    assert [nli.LABELS_FR[name] for name in nli.LABELS] == list(data_catalog.NLI_LABELS_FR)


def test_encode_labels_strings_and_ints():
    assert encode_labels(["entailment", " neutral ", "contradiction", 0, np.int64(2)], nli.LABELS).tolist() == [0, 1, 2, 0, 2]


def test_encode_labels_names_offending_rows():
    with pytest.raises(ValueError) as err:
        encode_labels(["entailment", "contradictoire", "neutral", 7, None, True], nli.LABELS)
    msg = str(err.value)
    assert "ligne 1" in msg and "contradictoire" in msg and "ligne 3" in msg and "ligne 4" in msg
    assert "ligne 0" not in msg and "ligne 5" in msg and "entailment, neutral, contradiction" in msg
    with pytest.raises(TypeError):
        encode_labels("entailment", nli.LABELS)


def test_make_dataset(tokenizer):
    ds = nli.make_dataset(_frame(), tokenizer, max_length=8)
    assert len(ds) == 4 and ds["labels"] == [0, 2, 1, 0]
    assert max(ds["length"]) <= 8 and ds["length"][0] == 8  # tronqué à 8 jetons
    first = ds[2]["input_ids"]
    ids = tokenizer("elle mange", "elle dort")["input_ids"]
    assert first == ids  # paire encodée ensemble : [CLS] A [SEP] B [SEP]
    with pytest.raises(ValueError, match="ligne 1"):
        bad = _frame().assign(label=["entailment", "oui", "neutral", "neutral"])
        nli.make_dataset(bad, tokenizer)
    with pytest.raises(ValueError, match="Colonnes manquantes"):
        nli.make_dataset(_frame().drop(columns="hypothesis"), tokenizer)


@pytest.mark.parametrize(
    "name,targets,trainable,total",
    [("camembert-base", ["query", "value"], 887_811, 111_512_070),
     ("camemberta-base", ["query_proj", "value_proj"], 297_219, 112_694_790)],
)
def test_parameter_counts_reproduce_seed(name, targets, trainable, total):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(nli.published_config(name))
    groups = nli.parameter_groups(model)
    assert sum(groups.values()) == sum(p.numel() for p in model.parameters())
    assert "autres" not in groups
    if name == "camemberta-base":
        assert groups["convolution après la 1re couche"] == 3 * 768 * 768 + 768 + 2 * 768
        assert groups["positions relatives (table et normalisation)"] == 512 * 768 + 2 * 768
        assert "positions absolues" not in groups
    else:
        assert groups["positions absolues"] == 514 * 768 and "convolution après la 1re couche" not in groups
    rep = nli.parameter_report(add_lora(model, targets, task="SEQ_CLS"))
    assert (rep["trainable"], rep["all"]) == (trainable, total)
    assert rep["lora"] == 12 * 2 * (768 * 8 + 8 * 768)
    assert rep["head_frozen_copy"] == rep["head_trainable"]  # peft garde l'original gelé à côté de la copie
    assert rep["model"] + rep["lora"] + rep["head_trainable"] == total


def test_add_lora_rejects_unknown_targets_with_layer_list(tiny_model):
    with pytest.raises(ValueError) as err:
        add_lora(tiny_model, ["query_proj", "value_proj"], task="SEQ_CLS")
    msg = str(err.value)
    assert "query_proj" in msg and "Couches linéaires disponibles" in msg and "query" in msg and "value" in msg
    with pytest.raises(TypeError):
        add_lora(tiny_model, "query", task="SEQ_CLS")
    with pytest.raises(ValueError, match="inconnu"):
        nli.published_config("flaubert-base")


def test_compute_metrics():
    logits = np.array([[2, 0, 0], [0, 3, 0], [0, 0, 1], [1, 0, 0]], dtype=float)
    out = nli.compute_metrics((logits, np.array([0, 1, 2, 1])))
    assert out["accuracy"] == pytest.approx(0.75)


def test_predict_proba_order_and_padding(tokenizer, tiny_model):
    f = _frame()
    p = nli.predict_proba(tiny_model, tokenizer, f.premise, f.hypothesis, batch_size=3)
    assert p.shape == (4, 3) and np.allclose(p.sum(1), 1, atol=1e-6)
    # Une paire seule (sans remplissage) donne la même chose que dans un lot trié.
    for i in range(4):
        enc = tokenizer(f.premise[i], f.hypothesis[i], return_tensors="pt")
        with torch.no_grad():
            ref = torch.softmax(tiny_model(**enc).logits, -1)[0].numpy()
        np.testing.assert_allclose(p[i], ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        nli.predict_proba(tiny_model, tokenizer, ["a"], [])
    with pytest.raises(TypeError):
        nli.predict_proba(tiny_model, tokenizer, "le chat", "le chien")


def test_trainer_runs_and_keeps_best(tmp_path, tokenizer):
    model, ds = _lora_model_and_data(tokenizer)
    args = nli.training_arguments(tmp_path, num_epochs=2, eval_steps=1, batch_size=8, group_by_length=True)
    trainer = nli.make_trainer(model, tokenizer, ds, ds, args, patience=3)
    trainer.train()
    train, evals = nli.history(trainer.state.log_history)
    assert len(evals) >= 2 and "eval_f1_macro" in evals
    assert trainer.state.best_metric == pytest.approx(evals["eval_f1_macro"].max())


def test_training_arguments_accumulation(tmp_path):
    args = nli.training_arguments(tmp_path, batch_size=32, accumulation=2)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (16, 2)
    with pytest.raises(ValueError, match="divise"):
        nli.training_arguments(tmp_path, batch_size=32, accumulation=3)
    with pytest.raises(ValueError):
        nli.training_arguments(tmp_path, batch_size=0)


def test_standardize():
    raw = pd.DataFrame({"premise": ["a", "b"], "hypothesis": ["c", "d"], "label": [0, 2],
                        "label_text": ["entailment", "contradiction"], "genre": ["x", "y"]})
    out = nli.standardize(raw)
    assert list(out.columns) == ["premise", "hypothesis", "label"]
    assert out.label.tolist() == ["entailment", "contradiction"]
    assert nli.standardize(raw.drop(columns="label_text")).label.tolist() == ["entailment", "contradiction"]
    with pytest.raises(ValueError, match="ligne 1"):
        nli.standardize(raw.assign(label_text=["entailment", "maybe"]))
    with pytest.raises(TypeError):
        nli.standardize([1, 2])


def test_save_and_load_modules_outside_adapter(tmp_path, tokenizer):
    from peft import PeftModel

    cfg = _tiny_config(layers=1)
    torch.manual_seed(0)
    base = BertForSequenceClassification(cfg)
    checkpoint = {k: v.clone() for k, v in base.state_dict().items() if "pooler" not in k}  # sans pooler, comme e5
    trained = add_lora(base, ["query", "value"], task="SEQ_CLS", r=2)
    with torch.no_grad():
        for n, p in trained.named_parameters():
            if "lora_B" in n:
                p.normal_()
    trained.save_pretrained(tmp_path)
    names = nli.save_modules(trained, tmp_path, names=("pooler",))
    assert names == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    f = _frame()
    ref = nli.predict_proba(trained, tokenizer, f.premise, f.hypothesis)

    def reload(with_modules: bool):
        torch.manual_seed(1)  # un autre tirage pour les poids absents, comme un nouveau chargement
        fresh = BertForSequenceClassification(cfg)
        fresh.load_state_dict(checkpoint, strict=False)  # le pooler garde son nouveau tirage
        if with_modules:
            nli.load_modules(fresh, tmp_path)
        return nli.predict_proba(PeftModel.from_pretrained(fresh, tmp_path), tokenizer, f.premise, f.hypothesis)

    assert not np.allclose(reload(False), ref, atol=1e-4)
    np.testing.assert_allclose(reload(True), ref, atol=1e-5)
    with pytest.raises(ValueError, match="introuvable"):
        nli.load_modules(BertForSequenceClassification(cfg), tmp_path / "nulle_part")
    with pytest.raises(ValueError, match="Aucun sous-module"):
        nli.save_modules(trained, tmp_path, names=("poolr",))
    with pytest.raises(TypeError):
        nli.save_modules(trained, tmp_path, names="pooler")
    with pytest.raises(TypeError):
        nli.load_modules("modèle", tmp_path)


def test_trainer_logged_loss_not_multiplied_by_accumulation(tmp_path, tokenizer):
    """Avec des gradients accumulés, la perte journalisée reste une moyenne (≈ ln 3 au départ), pas ×2."""
    model, ds = _lora_model_and_data(tokenizer)
    args = nli.training_arguments(tmp_path, num_epochs=1, eval_steps=100, batch_size=8, accumulation=2,
                                  learning_rate=1e-6, logging_steps=1)
    trainer = nli.make_trainer(model, tokenizer, ds, ds, args, patience=3)
    assert trainer.model_accepts_loss_kwargs is False
    trainer.train()
    train, _ = nli.history(trainer.state.log_history)
    assert len(train) >= 1
    assert train["loss"].astype(float).max() < 1.5   # ln 3 ≈ 1,10 ; une perte doublée vaudrait ≈ 2,2


def test_seed_hparams_are_two_by_32():
    assert nli.SEED_HPARAMS["batch_size"] == 64 and nli.SEED_HPARAMS["accumulation"] == 2


def test_full_profile_effective_batch_is_64(tmp_path, monkeypatch):
    args = nli.training_arguments(tmp_path, batch_size=64, accumulation=2)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (32, 2)
    assert args.train_batch_size * args.gradient_accumulation_steps == 64
    # Avec deux GPU, le lot effectif se partage aussi entre les cartes : 64 = 32 × 1 × 2 passe la
    # vérification, 64 = ? × 64 × 2 ne le peut pas (l'erreur le dit avant de construire les arguments).
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match="multiple de accumulation × GPU"):
        nli.training_arguments(tmp_path, batch_size=64, accumulation=64)


def test_pooled_features_equal_masked_mean(tokenizer, tiny_model):
    from atelier.embeddings.pooling import mean_pool

    f = _frame()
    feats = lpft.pooled_features(tiny_model, tokenizer, f.premise, f.hypothesis, batch_size=3)
    enc = tokenizer(list(f.premise), list(f.hypothesis), padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = tiny_model.bert(**enc).last_hidden_state
    assert feats.shape == (4, 16)
    np.testing.assert_allclose(feats, mean_pool(hidden, enc["attention_mask"]).numpy(), atol=1e-5)
    with pytest.raises(TypeError):
        lpft.pooled_features(tiny_model, tokenizer, "une phrase", "une autre")


def test_scores_with_intervals_bracket_the_estimate():
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, 3, 200))
    out = nli.scores_with_intervals(y, pred, n_resamples=200)
    assert out["accuracy"].estimate == pytest.approx(accuracy_score(y, pred))
    assert out["f1_macro"].estimate == pytest.approx(f1_score(y, pred, average="macro"))
    for iv in out.values():
        assert iv.low < iv.estimate < iv.high and iv.high - iv.low < 0.3
    with pytest.raises(ValueError):
        nli.scores_with_intervals(y, pred[:10])


def test_scores_with_intervals_average_seeds_on_the_same_pairs():
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    preds = np.stack([np.where(rng.random(300) < q, y, rng.integers(0, 3, 300)) for q in (0.4, 0.6, 0.8)], axis=1)
    out = nli.scores_with_intervals(y, preds, n_resamples=200)
    assert out["accuracy"].estimate == pytest.approx(np.mean([accuracy_score(y, preds[:, j]) for j in range(3)]))
    assert out["f1_macro"].estimate == pytest.approx(np.mean([f1_score(y, preds[:, j], average="macro") for j in range(3)]))
    one = nli.scores_with_intervals(y, preds[:, 2], n_resamples=200)
    two = nli.scores_with_intervals(y, preds[:, [2]], n_resamples=200)   # une colonne = un modèle
    assert one["accuracy"] == two["accuracy"]
    for iv in out.values():
        assert iv.low < iv.estimate < iv.high
    with pytest.raises(ValueError, match="graines"):
        nli.scores_with_intervals(y, preds[:10])
