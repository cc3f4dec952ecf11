"""Batterie d'oubli du chapitre 05 : ce qu'un encodeur sait faire, avant et après un affinage.

Chaque mesure prend une fonction ``encode_fn`` (textes -> embeddings (N, H)) et
rend un nombre entre 0 et 1 (Spearman entre -1 et 1) :

- :func:`sts_spearman` : similarité STS-B (cosinus des paires contre notes humaines) ;
- :func:`pair_auc` : paraphrase PAWS-X (le cosinus sépare-t-il paraphrases et pièges ?) ;
- :func:`retrieval_top1` : recherche FR→EN (la traduction alignée est-elle la plus proche ?) ;
- :func:`probe_accuracy` : classification par régression logistique sur les embeddings gelés,
  en validation croisée stratifiée.

>>> battery(encode_fn, tasks)   # {"STS-B (Spearman)": 0.78, ...}
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from atelier.finetuning.encoders import embeddings_of, pair_cosines
from atelier.runtime.checks import check_float
from atelier.finetuning.fewshot import check_texts


def _same_length(**arrays) -> None:
    sizes = {name: len(a) for name, a in arrays.items()}
    if len(set(sizes.values())) != 1:
        detail = ", ".join(f"{k} ({v})" for k, v in sizes.items())
        raise ValueError(f"{detail} doivent avoir la même longueur.")


def sts_spearman(encode_fn: Callable, texts_a, texts_b, scores) -> float:
    """Spearman entre le cosinus des deux phrases de chaque paire et la note humaine."""
    from scipy.stats import spearmanr

    scores = np.asarray(scores, dtype=float)
    _same_length(texts_a=list(texts_a), texts_b=list(texts_b), scores=scores)
    if scores.ndim != 1 or not np.isfinite(scores).all():
        raise ValueError("scores doit être une suite de notes finies (une par paire), sans NaN.")
    return float(spearmanr(pair_cosines(encode_fn, texts_a, texts_b), scores).statistic)


def pair_auc(encode_fn: Callable, texts_a, texts_b, labels) -> float:
    """Aire sous la courbe ROC du cosinus pour séparer les paires ``labels == 1`` des autres."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    _same_length(texts_a=list(texts_a), texts_b=list(texts_b), labels=labels)
    if set(np.unique(labels)) != {0, 1}:
        raise ValueError(f"labels doit contenir des 0 et des 1 (les deux), reçu {sorted(set(labels.tolist()))}.")
    return float(roc_auc_score(labels, pair_cosines(encode_fn, texts_a, texts_b)))


def retrieval_top1(encode_fn: Callable, queries, targets) -> float:
    """Part des requêtes dont la cible alignée (même position) est la plus proche au cosinus."""
    queries, targets = check_texts(queries, name="queries"), check_texts(targets, name="targets")
    _same_length(queries=queries, targets=targets)
    q, t = embeddings_of(encode_fn, queries), embeddings_of(encode_fn, targets)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    return float(((q @ t.T).argmax(axis=1) == np.arange(len(q))).mean())  # (N, N) -> (N,)


def probe_accuracy(x: np.ndarray, y, *, folds: int = 5, C: float = 10.0, seed: int = 0) -> float:
    """Exactitude moyenne d'une régression logistique (vecteurs normalisés) en validation croisée stratifiée."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    x, y = np.asarray(x, dtype=float), np.asarray(y)
    if x.ndim != 2:
        raise ValueError(f"x doit être une matrice (N, H), reçu la forme {x.shape}.")
    _same_length(x=x, y=y)
    if not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds doit être un entier ≥ 2, reçu {folds!r}.")
    check_float("C", C, min=0, min_open=True)
    if not np.isfinite(x).all() or not np.linalg.norm(x, axis=1).all():
        raise ValueError("x contient des valeurs non finies (NaN, inf) ou des lignes nulles.")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2 or counts.max() < folds:  # comme StratifiedKFold : une classe au moins remplit les plis
        raise ValueError(f"y doit compter au moins deux classes, dont une avec au moins folds={folds} exemples ; "
                         f"reçu {dict(zip(classes.tolist(), counts.tolist()))}.")
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(LogisticRegression(C=C, max_iter=3000), x, y, cv=cv).mean())


def battery(encode_fn: Callable, tasks: dict) -> dict[str, float]:
    """Toutes les mesures de ``tasks`` pour un encodeur.

    ``tasks`` : ``{nom: (mesure, arguments)}``, où ``mesure`` est l'une des fonctions
    de ce module ; ``probe_accuracy`` reçoit ``(textes, étiquettes)`` et encode les textes.
    """
    if not isinstance(tasks, dict) or not tasks:
        raise ValueError("tasks doit être un dictionnaire non vide {nom: (mesure, arguments)}.")
    out = {}
    for name, task in tasks.items():
        if not isinstance(task, (tuple, list)) or len(task) != 2:
            raise ValueError(f"tasks[{name!r}] doit être un couple (mesure, arguments), reçu {task!r}"[:200] + ".")
        measure, args = task
        if measure is probe_accuracy:
            texts, y = args
            out[name] = probe_accuracy(encode_fn(check_texts(texts)), y)
        elif measure in (sts_spearman, pair_auc, retrieval_top1):
            out[name] = measure(encode_fn, *args)
        else:
            raise ValueError(f"Mesure inconnue pour {name!r} : {measure!r}.")
    return out
