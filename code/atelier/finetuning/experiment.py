"""Une expérience du chapitre 05 : entraîner une approche, la mesurer, l'évaluer, peser l'artefact."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from atelier.finetuning.budget import FinetuneConfig, check_approach
from atelier.finetuning.classifiers import TorchClassifier, make_classifier
from atelier.finetuning.encoders import FeatureCache, autocast, dir_size_mb, release_memory
from atelier.finetuning.fewshot import check_texts
from atelier.labels import check_label_names, encode_labels
from atelier.metrics import classification_scores
from atelier.runtime.checks import check_int, check_type
from atelier.runtime.config import model_device, seed_everything, to_device
from atelier.runtime.measure import measure

@dataclass
class FinetuneResult:
    """Résultat d'un entraînement + évaluation (voir :func:`run`)."""

    approach: str
    n_train: int
    seed: int
    scores: dict[str, float]
    train_seconds: float
    start_mb: float
    peak_mb: float
    delta_peak_mb: float
    trainable_params: int
    artifact_mb: float | None
    test_predictions: np.ndarray = field(repr=False)
    test_embeddings: np.ndarray = field(repr=False)
    classifier: object = field(default=None, repr=False)

    def row(self) -> dict:
        """Une ligne de tableau (sans les tableaux NumPy ni le modèle)."""
        skip = ("test_predictions", "test_embeddings", "classifier", "scores")
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}  # sans copier le modèle
        return {**d, **self.scores}


def run(approach: str, encoder, train_texts, train_labels, test_texts, test_labels, *, labels,
        config: FinetuneConfig | None = None, seed: int = 0, save_artifact: bool = True,
        keep_classifier: bool = False, cache: FeatureCache | None = None) -> FinetuneResult:
    """Entraîne une approche, la mesure (temps, mémoire), l'évalue sur le test, pèse l'artefact.

    ``labels`` : noms des classes (les étiquettes peuvent être ces noms ou leurs indices).
    ``cache`` : embeddings de l'encodeur de base déjà calculés (:class:`FeatureCache`) ;
    la durée d'entraînement compte quand même ce qu'a coûté leur calcul.
    """
    check_approach(approach)
    labels = check_label_names(labels)
    train_texts, test_texts = check_texts(train_texts, name="train_texts"), check_texts(test_texts, name="test_texts")
    y_train, y_test = encode_labels(train_labels, labels), encode_labels(test_labels, labels)
    if len(y_train) != len(train_texts) or len(y_test) != len(test_texts):
        raise ValueError("Il faut autant d'étiquettes que de textes (entraînement et test).")
    if len(np.unique(y_train)) < 2:
        raise ValueError(f"train_labels ne contient qu'une classe ({labels[int(y_train[0])]!r}) : il en faut au moins "
                         "deux pour apprendre à les séparer.")
    seed = check_int("seed", seed, min=0)
    clf = make_classifier(approach, encoder, len(labels), config, cache)
    release_memory()
    seed_everything(int(seed))
    with measure() as m:
        clf.fit(train_texts, y_train, seed=int(seed))
    # Embeddings de base servis par le cache : on compte ce qu'ils ont coûté à calculer.
    uses_cache = cache is not None and (approach == "frozen" or (approach != "setfit" and clf.cfg.probe_init))
    cached_seconds = cache.seconds(train_texts) if uses_cache else 0.0
    feats = clf.features(test_texts)
    pred = clf.predict_features(feats)
    emb = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    size = None
    if save_artifact:
        tmp = Path(tempfile.mkdtemp(prefix=f"atelier-{approach}-"))
        try:
            size = dir_size_mb(clf.save(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    result = FinetuneResult(
        approach=approach, n_train=len(train_texts), seed=int(seed), scores=classification_scores(y_test, pred),
        train_seconds=m.seconds + cached_seconds, start_mb=m.start_mb, peak_mb=m.peak_mb, delta_peak_mb=m.delta_peak_mb,
        trainable_params=clf.trainable_parameters(), artifact_mb=size, test_predictions=pred,
        test_embeddings=emb, classifier=clf if keep_classifier else None)
    del clf
    release_memory()
    return result


def training_step_cost(encoder, texts, *, n_classes: int, batch_size: int, seq_len: int,
                       gradient_checkpointing: bool, steps: int = 1, config: FinetuneConfig | None = None) -> dict:
    """Durée et surcoût mémoire d'un pas avant + arrière de l'affinage complet, à longueur fixe.

    Les textes sont complétés (``padding="max_length"``) à ``seq_len`` jetons pour
    simuler des documents plus longs. Sert à mesurer le gradient checkpointing.
    """
    texts = check_texts(texts)
    n_classes, batch_size = check_int("n_classes", n_classes, min=2), check_int("batch_size", batch_size, min=1)
    seq_len, steps = check_int("seq_len", seq_len, min=1), check_int("steps", steps, min=1)
    check_type("gradient_checkpointing", gradient_checkpointing, bool)
    if len(texts) < batch_size:
        raise ValueError(f"Il faut au moins batch_size={batch_size} textes, reçu {len(texts)}.")
    cfg = replace(config or FinetuneConfig(), gradient_checkpointing=gradient_checkpointing, max_length=seq_len)
    clf = TorchClassifier(encoder, n_classes, cfg, "full")
    model = clf.build_model(seed=0)
    model.train()
    device = model_device(model)
    batch = to_device(clf.tokenizer([cfg.prefix + t for t in texts[:batch_size]], padding="max_length", truncation=True,
                                    max_length=seq_len, return_tensors="pt"), device)
    y = torch.arange(batch_size, device=device) % n_classes
    release_memory()
    with measure() as m:
        for _ in range(steps):
            with autocast(cfg.bf16, device):
                logits = model(batch["input_ids"], batch["attention_mask"])  # (B, C)
            loss = nn.functional.cross_entropy(logits.float(), y)
            loss.backward()
            model.zero_grad(set_to_none=True)
    out = {"seconds_per_step": m.seconds / steps, "delta_peak_mb": m.delta_peak_mb, "loss": float(loss.detach())}
    del model, clf
    release_memory()
    return out
