"""Échantillons à k exemples par classe, et validation des textes et des étiquettes.

Utilisé par le chapitre « Affinage d'embeddings ou de modèle ? »
(``05_finetuning``) et par :mod:`atelier.finetuning`.

>>> train = sample_per_class(df, k=8, seed=0)   # 8 phrases par thème, tirées au hasard
>>> y = encode_labels(train["label"], LABELS)     # noms de classes -> entiers 0..C-1
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from atelier.labels import check_label_names, encode_labels  # noqa: F401 (réexportés : API du chapitre 05)


def check_texts(texts, *, name: str = "texts") -> list[str]:
    """Vérifie une liste de textes non vides et la renvoie sous forme de ``list[str]``."""
    if isinstance(texts, str):
        raise TypeError(f"{name} doit être une liste de textes, pas une chaîne seule : écrivez [{texts[:30]!r}].")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"{name} doit être une liste de textes, reçu {type(texts).__name__}.") from None
    if not texts:
        raise ValueError(f"{name} est vide : il faut au moins un texte.")
    bad_type = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad_type:
        i = bad_type[0]
        raise TypeError(
            f"{name} ne doit contenir que des chaînes : l'élément {i} est de type {type(texts[i]).__name__}."
        )
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        shown = ", ".join(map(str, empty[:5])) + (" …" if len(empty) > 5 else "")
        raise ValueError(f"{name} contient {len(empty)} texte(s) vide(s) (positions {shown}) : retirez-les d'abord.")
    return texts


def sample_per_class(
    df: pd.DataFrame,
    k: int | None,
    *,
    seed: int = 0,
    label_col: str = "label",
    text_col: str = "text",
    labels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Tire ``k`` exemples de chaque classe (sans remise), mélangés ; ``k=None`` garde tout.

    Lève une ``ValueError`` si une classe a moins de ``k`` exemples, si un texte
    est vide ou si une étiquette n'appartient pas à ``labels`` (quand donné).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df doit être un DataFrame pandas, reçu {type(df).__name__}.")
    missing = [c for c in (text_col, label_col) if c not in df.columns]
    if missing:
        raise ValueError(f"Colonne(s) absente(s) : {missing}. Colonnes présentes : {list(df.columns)}.")
    if k is not None and (not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1):
        raise ValueError(f"k doit être un entier ≥ 1 (exemples par classe) ou None pour tout garder, reçu {k!r}.")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"La graine doit être un entier positif ou nul, reçu {seed!r}.")
    check_texts(df[text_col].tolist(), name=f"la colonne {text_col!r}")
    if labels is not None:
        encode_labels(df[label_col].tolist(), labels)
    if k is None:
        return df.sample(frac=1.0, random_state=int(seed)).reset_index(drop=True)
    counts = df[label_col].value_counts()
    if labels is not None:
        counts = counts.reindex(list(labels), fill_value=0)
    too_small = counts[counts < k]
    if len(too_small):
        detail = ", ".join(f"{name!r} : {n}" for name, n in too_small.items())
        raise ValueError(
            f"Pas assez d'exemples pour k={k} par classe : {detail}. "
            f"Le maximum possible ici est k={int(counts.min())}."
        )
    parts = [g.sample(n=int(k), random_state=int(seed)) for _, g in df.groupby(label_col, sort=True)]
    return pd.concat(parts).sample(frac=1.0, random_state=int(seed)).reset_index(drop=True)
