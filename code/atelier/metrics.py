"""Scores de classification partagés.

Utilisé par les chapitres « CamemBERT ou CamemBERTa ? » (NLI) et
« Affinage d'embeddings ou de modèle ? » (SIB-200).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score


def classification_scores(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """Exactitude, F1 macro et F1 pondéré (valeurs entre 0 et 1).

    Les deux séquences doivent être non vides et de même longueur.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 1 or y_pred.ndim != 1:
        raise ValueError("y_true et y_pred doivent être des séquences à une dimension d'étiquettes.")
    if len(y_true) == 0:
        raise ValueError("Impossible de calculer des scores sur zéro exemple.")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
            raise ValueError(f"{name} doit contenir des étiquettes (entiers ou noms de classes) ; reçu des "
                             f"valeurs non entières ou NaN (par exemple {y[~(np.isfinite(y) & (y == np.round(y)))][:3].tolist()!r}).")
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"y_true ({len(y_true)} éléments) et y_pred ({len(y_pred)} éléments) doivent avoir la même longueur."
        )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
    }


class Interval(NamedTuple):
    """Une estimation et son intervalle de confiance (bornes incluses)."""

    estimate: float
    low: float
    high: float


def _check_level(level: float) -> None:
    if not isinstance(level, float | int) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level doit être un nombre strictement entre 0 et 1 ; reçu : {level!r}.")


def bootstrap_interval(
    metric: Callable[..., float],
    *samples: Sequence,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Intervalle bootstrap (percentiles) d'un score calculé sur des exemples appariés.

    ``metric(*samples)`` rend un nombre ; les échantillons (par exemple ``y_true``
    et ``y_pred``) sont rééchantillonnés ensemble, exemple par exemple, avec
    ``scipy.stats.bootstrap``. Pour comparer deux systèmes sur les mêmes exemples,
    passer ``y_true, pred_a, pred_b`` et une métrique qui rend la différence.
    """
    _check_level(level)
    if not samples:
        raise ValueError("bootstrap_interval attend au moins un échantillon ; reçu : aucun.")
    arrays = [np.asarray(s) for s in samples]
    sizes = {len(a) for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"Les échantillons doivent avoir la même longueur ; reçu : {sorted(sizes)}.")
    (n,) = sizes
    if n < 2:
        raise ValueError(f"Il faut au moins 2 exemples pour un intervalle bootstrap ; reçu : {n}.")
    estimate = float(metric(*arrays))
    index = np.arange(n)
    res = stats.bootstrap(
        (index,),
        lambda i: float(metric(*(a[i] for a in arrays))),
        n_resamples=n_resamples,
        confidence_level=level,
        method="percentile",
        vectorized=False,
        random_state=np.random.default_rng(seed),
    )
    return Interval(estimate, float(res.confidence_interval.low), float(res.confidence_interval.high))


def seed_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Moyenne sur plusieurs graines et intervalle de Student (n - 1 degrés de liberté).

    Avec une seule valeur, l'intervalle est réduit au point : il faut au moins
    deux graines pour parler de bruit.
    """
    _check_level(level)
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"values doit être une liste non vide de nombres ; reçu : {values!r}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"values contient une valeur non finie : {values!r}.")
    mean = float(x.mean())
    if len(x) == 1:
        return Interval(mean, mean, mean)
    half = float(stats.t.ppf(0.5 + level / 2, df=len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return Interval(mean, mean - half, mean + half)
