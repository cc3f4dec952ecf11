"""Une sonde linéaire recopiée dans une tête ``nn.Linear`` : le départ de « sonde, puis affinage » (*LP-FT*).

Utilisé par les chapitres « CamemBERT ou CamemBERTa ? L'attention
désentrelacée » (``book/03_camembert.md`` : tête NLI partie d'une sonde
normalisée, ``StandardScaler`` + ``LogisticRegression``) et « Affinage
d'embeddings ou de modèle ? » (``book/05_finetuning.md`` : tête des approches
LoRA et affinage complet partie d'une ``LogisticRegression`` seule). Au pas 0
de l'affinage, le modèle prédit alors exactement comme la sonde.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from atelier.runtime.checks import check_type

__all__ = ["head_from_probe"]


def head_from_probe(head: nn.Linear, probe) -> nn.Linear:
    """Recopie dans ``head`` une sonde scikit-learn ajustée : ``LogisticRegression`` ou ``make_pipeline(StandardScaler(), LogisticRegression())``.

    Avec la normalisation, la sonde calcule ``W (x − μ) / σ + b`` ; la couche
    reçoit ``W / σ`` et ``b − (W / σ) μ``, ce qui donne les mêmes logits sur les
    vecteurs bruts (aux arrondis du float32 près). Sans elle, ``W`` et ``b``
    tels quels. Renvoie ``head``, modifiée sur place.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    check_type("head", head, nn.Linear)
    steps = list(getattr(probe, "named_steps", {}).values()) or [probe]
    scaler, logistic = (None, steps[0]) if len(steps) == 1 else (steps + [None])[:2]
    if (len(steps) > 2 or not isinstance(logistic, LogisticRegression)
            or not (scaler is None or isinstance(scaler, StandardScaler))):
        raise TypeError("probe doit être une LogisticRegression ou make_pipeline(StandardScaler(), LogisticRegression()), "
                        f"reçu {type(probe).__name__}" + (f" ({[type(s).__name__ for s in steps]})" if len(steps) > 1 else "") + ".")
    coef, intercept = getattr(logistic, "coef_", None), getattr(logistic, "intercept_", None)
    mean = np.zeros(head.in_features) if scaler is None else getattr(scaler, "mean_", None)
    scale = np.ones(head.in_features) if scaler is None else getattr(scaler, "scale_", None)
    if mean is None or scale is None or coef is None or intercept is None:
        raise ValueError("La sonde doit être ajustée (fit) avant d'être recopiée dans la tête.")
    if coef.shape != tuple(head.weight.shape):
        raise ValueError(f"Sonde de forme {coef.shape} (classes × dimensions), tête de forme {tuple(head.weight.shape)}\u00a0: "
                         "il faut toutes les classes dans l'entraînement et la dimension de l'encodeur.")
    weight = coef / scale  # (K, C)
    bias = intercept - weight @ mean  # (K,)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(np.asarray(weight, dtype=np.float64)).to(head.weight))
        head.bias.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float64)).to(head.bias))
    return head
