"""Scores de classification partagés.

Utilisé par les chapitres « CamemBERT ou CamemBERTa ? » (NLI) et
« Fine-tuning d'embeddings ou de modèle ? » (SIB-200).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"y_true ({len(y_true)} éléments) et y_pred ({len(y_pred)} éléments) doivent avoir la même longueur."
        )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
    }
