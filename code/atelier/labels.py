"""Étiquettes de classes : noms → entiers ``0..C-1``, avec des erreurs qui nomment les lignes fautives.

Utilisé par les chapitres « CamemBERT ou CamemBERTa ? » (NLI, trois classes)
et « Affinage d'embeddings ou de modèle ? » (SIB-200, sept thèmes).

>>> encode_labels(["neutral", 0, "contradiction"], ("entailment", "neutral", "contradiction")).tolist()
[1, 0, 2]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["check_label_names", "encode_labels"]


def check_label_names(labels: Sequence[str]) -> list[str]:
    """Vérifie la liste des noms de classes (au moins deux, distincts, non vides)."""
    if isinstance(labels, str):
        raise TypeError("labels doit être une liste de noms de classes, pas une chaîne seule.")
    labels = list(labels)
    if len(labels) < 2:
        raise ValueError(f"Il faut au moins deux classes, reçu {len(labels)} : {labels!r}.")
    if any(not isinstance(x, str) or not x.strip() for x in labels):
        raise ValueError(f"Les noms de classes doivent être des chaînes non vides, reçu {labels!r}.")
    if len(set(labels)) != len(labels):
        raise ValueError(f"Les noms de classes doivent être distincts, reçu {labels!r}.")
    return labels


def encode_labels(values: Iterable, labels: Sequence[str]) -> np.ndarray:
    """Noms de classes (espaces autour ignorés) ou indices ``0..C-1`` → tableau d'entiers ``int64``.

    ``labels`` donne l'ordre des classes. Une étiquette inconnue (nom absent,
    indice hors de ``0..C-1``, booléen, ``None``…) lève une ``ValueError`` qui
    nomme les lignes fautives et les étiquettes acceptées.
    """
    labels = check_label_names(labels)
    if isinstance(values, (str, bytes)):
        raise TypeError("Les étiquettes doivent former une séquence, pas une chaîne seule : écrivez [étiquette].")
    values = list(values)
    if not values:
        raise ValueError("Aucune étiquette : la liste est vide.")
    index = {name: i for i, name in enumerate(labels)}
    out, bad = [], []
    for row, value in enumerate(values):
        if isinstance(value, str) and value.strip() in index:
            out.append(index[value.strip()])
        elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) \
                and 0 <= int(value) < len(labels):
            out.append(int(value))
        else:
            bad.append((row, value))
    if bad:
        shown = ", ".join(f"ligne {r} : {v!r}" for r, v in bad[:10])
        more = f" (et {len(bad) - 10} autres)" if len(bad) > 10 else ""
        raise ValueError(
            f"{len(bad)} étiquette(s) inconnue(s) — {shown}{more}. Étiquettes acceptées : "
            f"{', '.join(labels)} (ou leurs indices 0..{len(labels) - 1} dans cet ordre)."
        )
    return np.asarray(out, dtype=np.int64)
