"""Sonde linéaire puis affinage (*LP-FT*) : une tête de classification qui part de la sonde.

Utilisé par le chapitre « CamemBERT ou CamemBERTa ? L'attention
désentrelacée » (``book/03_camembert.md``), profil ``light`` :

* :class:`MeanPoolNLI` : encodeur + moyenne des jetons + couche linéaire,
  un modèle que le ``Trainer`` de Hugging Face entraîne tel quel (il rend
  la perte et les logits) ;
* :func:`head_from_probe` : recopie dans cette couche linéaire une sonde
  ``StandardScaler`` + ``LogisticRegression`` de scikit-learn, normalisation
  comprise ; au pas 0 de l'affinage, le modèle prédit alors exactement
  comme la sonde ;
* :func:`trainable_state`, :func:`restore_state` : garder et remettre les
  poids entraînables d'un pas (pour pouvoir retenir le pas 0).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from atelier.embeddings.pooling import mean_pool
from atelier.runtime.checks import check_int, check_type

__all__ = ["MeanPoolNLI", "head_from_probe", "trainable_state", "restore_state"]


class MeanPoolNLI(nn.Module):
    """Encodeur (``AutoModel``) + moyenne des vrais jetons de la paire + couche linéaire vers ``n_classes``.

    ``forward`` accepte ce que produit ``DataCollatorWithPadding`` (``input_ids``,
    ``attention_mask``, ``token_type_ids``, ``labels``) et rend un
    ``SequenceClassifierOutput`` : perte d'entropie croisée si ``labels`` est
    donné, logits (B, ``n_classes``). Les vecteurs moyennés sont ceux de
    :func:`atelier.camembert.nli.pooled_features` (sonde linéaire).
    """

    def __init__(self, encoder: nn.Module, n_classes: int = 3):
        super().__init__()
        check_type("encoder", encoder, nn.Module)
        check_int("n_classes", n_classes, min=2)
        hidden = getattr(getattr(encoder, "config", None), "hidden_size", None)
        if not isinstance(hidden, int):
            raise ValueError(f"encoder doit avoir un config.hidden_size entier (un AutoModel), reçu {type(encoder).__name__}.")
        self.encoder = encoder
        self.config = encoder.config  # lu par peft et par le Trainer
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None, **_):
        from transformers.modeling_outputs import SequenceClassifierOutput

        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state  # (B, T, C)
        logits = self.head(mean_pool(hidden, attention_mask))  # (B, 3)
        loss = None if labels is None else nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def head_from_probe(head: nn.Linear, probe) -> nn.Linear:
    """Recopie une sonde scikit-learn (``make_pipeline(StandardScaler(), LogisticRegression())``) dans ``head``.

    La sonde calcule ``W (x − μ) / σ + b`` ; la couche reçoit ``W / σ`` et
    ``b − (W / σ) μ``, ce qui donne les mêmes logits sur les vecteurs bruts
    (aux arrondis du float32 près). Renvoie ``head``, modifiée sur place.
    """
    check_type("head", head, nn.Linear)
    steps = getattr(probe, "named_steps", None)
    if not steps or len(steps) != 2:
        raise TypeError("probe doit être make_pipeline(StandardScaler(), LogisticRegression(...)) déjà ajusté.")
    scaler, logistic = list(steps.values())
    mean, scale = getattr(scaler, "mean_", None), getattr(scaler, "scale_", None)
    coef, intercept = getattr(logistic, "coef_", None), getattr(logistic, "intercept_", None)
    if mean is None or scale is None or coef is None or intercept is None:
        raise ValueError("La sonde doit être ajustée (fit) avant d'être recopiée dans la tête.")
    if coef.shape != tuple(head.weight.shape):
        raise ValueError(f"Sonde de forme {coef.shape} (classes × dimensions), tête de forme {tuple(head.weight.shape)} : "
                         "il faut les trois classes dans l'entraînement et la dimension de l'encodeur.")
    weight = coef / scale  # (3, C)
    bias = intercept - weight @ mean  # (3,)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(np.asarray(weight, dtype=np.float64)).to(head.weight))
        head.bias.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float64)).to(head.bias))
    return head


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copie des paramètres entraînables de ``model`` (LoRA et tête), par nom."""
    check_type("model", model, nn.Module)
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def restore_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Remet dans ``model`` les paramètres gardés par :func:`trainable_state`."""
    check_type("model", model, nn.Module)
    params = dict(model.named_parameters())
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise ValueError(f"Paramètres absents du modèle : {unknown[:5]}.")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
