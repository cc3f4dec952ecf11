"""Perplexité d'un modèle causal, en une passe ou par fenêtre glissante.

Utilisé par le chapitre « Anatomie d'un LLM » (``book/01_anatomie.md``).

``PPL = exp(-(1/N) Σ log p(x_i | x_<i))`` : la moyenne porte sur les jetons
prédits (le premier jeton, sans contexte, n'est pas prédit).

Pour un texte plus long que la fenêtre de contexte, on suit la méthode de la
documentation de transformers (« Perplexity of fixed-length models ») : des
fenêtres de ``max_length`` jetons avancent de ``stride`` ; dans chaque fenêtre,
seuls les jetons pas encore évalués comptent, les autres servent de contexte.
Chaque jeton est évalué une fois, avec au plus ``max_length - 1`` jetons de
contexte. Différence avec la recette de la documentation : celle-ci pondère la
perte moyenne de chaque fenêtre par « jetons visés − 1 » ; ici on somme les
log-vraisemblances jeton par jeton (compte exact).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _context_window(model):
    cfg = model.config
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(cfg, name, None)
        if isinstance(value, int):
            return value
    raise ValueError("Impossible de lire la fenêtre de contexte du modèle (n_positions ou max_position_embeddings).")


def _windows(n_tokens, max_length, stride):
    """Fenêtres ``(début, fin, premier jeton évalué)`` de la méthode glissante."""
    windows, prev_end = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + max_length, n_tokens)
        windows.append((begin, end, max(prev_end, begin + 1)))
        prev_end = end
        if end == n_tokens:
            break
    return windows


@torch.no_grad()
def token_nll(model, input_ids, *, max_length, stride):
    """Log-vraisemblance négative de chaque jeton évalué : tenseur ``(N - 1,)``.

    ``input_ids`` : ``(1, N)``. L'élément ``i`` est ``-log p(x_{i+1} | contexte)``,
    le contexte étant la partie de la fenêtre qui précède ``x_{i+1}``.
    """
    ids = input_ids[0]  # (N,)
    nlls = []
    for begin, end, first_target in _windows(ids.shape[0], max_length, stride):
        window = ids[begin:end][None, :]  # (1, L)
        logits = model(input_ids=window, use_cache=False).logits[0].float()  # (L, V)
        logp = F.log_softmax(logits[:-1], dim=-1)  # prédictions des positions begin+1 … end-1
        targets = window[0, 1:]  # (L - 1,)
        nll = -logp.gather(1, targets[:, None]).squeeze(1)  # (L - 1,)
        nlls.append(nll[first_target - begin - 1:])  # seulement les jetons pas encore évalués
    return torch.cat(nlls)


def perplexity(model, tokenizer, text, *, stride=None, max_length=None):
    """Perplexité de ``model`` sur ``text`` (un nombre ≥ 1).

    Sans ``stride`` : une seule passe, le texte doit tenir dans ``max_length``.
    Avec ``stride`` : fenêtre glissante de ``max_length`` jetons qui avance de
    ``stride`` (``1 ≤ stride ≤ max_length``). ``max_length`` vaut par défaut la
    fenêtre de contexte du modèle et ne peut pas la dépasser.
    """
    if not isinstance(text, str):
        raise TypeError(f"text doit être une chaîne de caractères, reçu {type(text).__name__}.")
    if not text.strip():
        raise ValueError("Le texte est vide : la perplexité n'est pas définie.")
    window = _context_window(model)
    if max_length is None:
        max_length = window
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 2 <= max_length <= window:
        raise ValueError(f"max_length doit être un entier entre 2 et {window} (fenêtre du modèle), reçu {max_length!r}.")
    input_ids = tokenizer(text, return_tensors="pt")["input_ids"].to(model.device)  # (1, N)
    n = input_ids.shape[1]
    if n < 2:
        raise ValueError("Le texte doit compter au moins 2 jetons : le premier n'est jamais prédit.")
    if stride is None:
        if n > max_length:
            raise ValueError(
                f"Le texte compte {n} jetons, plus que la fenêtre de contexte ({max_length}) : "
                "passez stride=… (entre 1 et max_length) pour la méthode de la fenêtre glissante."
            )
        stride = max_length
    elif isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= max_length:
        raise ValueError(f"stride doit être un entier entre 1 et max_length ({max_length}), reçu {stride!r}.")
    nll = token_nll(model, input_ids, max_length=max_length, stride=stride)
    return math.exp(nll.mean().item())
