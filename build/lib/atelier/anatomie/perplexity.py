"""Perplexité d'un modèle causal, en une passe ou par fenêtre glissante.

Utilisé par le chapitre « Anatomie d'un LLM » (``book/01_anatomie.md``).

``PPL = exp(-(1/N) Σ log p(x_i | x_<i))`` : la moyenne porte sur les jetons
prédits (le premier jeton, sans contexte, n'est pas prédit).

Pour un texte plus long que la fenêtre de contexte, on suit la méthode de la
documentation de transformers (« Perplexity of fixed-length models ») : des
fenêtres de ``max_length`` jetons avancent de ``stride`` ; dans chaque fenêtre,
seuls les jetons pas encore évalués comptent, les autres servent de contexte.
Chaque jeton est évalué une fois, avec au plus ``max_length - 1`` jetons de
contexte. Deux différences avec la recette de la documentation, écrite pour
GPT-2 :

* celle-ci pondère la perte moyenne de chaque fenêtre par « jetons visés − 1 » ;
  ici on somme les log-vraisemblances jeton par jeton (compte exact) ;
* un modèle entraîné avec un jeton ``<bos>`` en tête de chaque séquence
  (Gemma, Llama) prédit très mal une fenêtre qui n'en a pas : par défaut, on
  remet ``<bos>`` au début de chaque fenêtre quand le tokeniseur en ajoute un.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from atelier.anatomie.generation import context_window
from atelier.runtime.checks import check_int, check_type


def _required_context_window(model):
    value = context_window(model)
    if value is not None:
        return value
    raise ValueError("Impossible de lire la fenêtre de contexte du modèle (n_positions ou max_position_embeddings).")


def sliding_windows(n_tokens, length, stride, first):
    """Fenêtres ``(début, fin, premier jeton évalué)`` de la méthode glissante.

    ``first`` : indice du premier jeton prédictible de la première fenêtre
    (1 sans préfixe : le jeton 0 n'a pas de contexte ; 0 avec un ``<bos>`` ajouté).
    """
    windows, prev_end = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + length, n_tokens)
        windows.append((begin, end, max(prev_end, begin + first)))
        prev_end = end
        if end == n_tokens:
            break
    return windows


def last_logits(model, window, keep):
    """Logits des ``keep`` dernières positions seulement (la tête de sortie coûte cher
    quand le vocabulaire est grand) : ``(keep, V)`` en float32."""
    try:
        out = model(input_ids=window, use_cache=False, logits_to_keep=keep)
    except TypeError:  # modèle sans logits_to_keep
        out = model(input_ids=window, use_cache=False)
    return out.logits[0, -keep:].float()


@torch.no_grad()
def token_nll(model, input_ids, *, max_length, stride, bos_id=None):
    """Log-vraisemblance négative de chaque jeton évalué, dans l'ordre du texte : tenseur ``(n,)``.

    ``input_ids`` : ``(1, N)``. Chaque jeton est évalué une fois, avec pour
    contexte la partie de sa fenêtre qui le précède. Sans ``bos_id`` (recette de
    la documentation), le premier jeton de chaque fenêtre qui n'a pas de
    contexte n'est pas évalué. Avec ``bos_id`` (``input_ids`` commence alors par
    ce jeton), chaque fenêtre commence par ``<bos>`` suivi de
    ``max_length - 1`` jetons du texte, comme le modèle l'a vu à l'entraînement.
    """
    ids = input_ids[0]  # (N,)
    prefix = ids[:0]
    if bos_id is not None:
        if ids[0].item() != bos_id:
            raise ValueError("bos_id est donné mais input_ids ne commence pas par ce jeton.")
        prefix, ids = ids[:1], ids[1:]
    p = prefix.shape[0]
    nlls = []
    for begin, end, first_target in sliding_windows(ids.shape[0], max_length - p, stride, first=1 - p):
        window = torch.cat([prefix, ids[begin:end]])[None, :]  # (1, L)
        n_targets = end - first_target  # jetons évalués dans cette fenêtre : les n_targets derniers
        logits = last_logits(model, window, n_targets + 1)  # (n_targets + 1, V)
        logp = F.log_softmax(logits[:-1], dim=-1)  # la position t prédit le jeton t + 1
        targets = window[0, window.shape[1] - n_targets:]  # (n_targets,)
        nlls.append(-logp.gather(1, targets[:, None]).squeeze(1))
    return torch.cat(nlls)


def perplexity(model, tokenizer, text, *, stride=None, max_length=None, prepend_bos=None):
    """Perplexité de ``model`` sur ``text`` (un nombre ≥ 1).

    Sans ``stride`` : une seule passe, le texte doit tenir dans ``max_length``.
    Avec ``stride`` : fenêtre glissante de ``max_length`` jetons qui avance de
    ``stride`` jetons. ``max_length`` vaut par défaut la fenêtre de contexte du
    modèle et ne peut pas la dépasser.

    ``prepend_bos`` : faut-il recommencer chaque fenêtre par ``<bos>`` ? Par
    défaut (``None``), oui si le tokeniseur en ajoute un en tête du texte
    (Gemma, Llama), non sinon (GPT-2) ; ``False`` reproduit exactement la
    recette de la documentation de transformers.
    """
    check_type("text", text, str)
    if not text.strip():
        raise ValueError("Le texte est vide : la perplexité n'est pas définie.")
    window = _required_context_window(model)
    if max_length is None:
        max_length = window
    max_length = check_int("max_length", max_length, min=3, max=window)  # au plus la fenêtre du modèle
    input_ids = tokenizer(text, return_tensors="pt")["input_ids"].to(model.device)  # (1, N)
    n = input_ids.shape[1]
    bos = getattr(tokenizer, "bos_token_id", None)
    has_bos = bos is not None and input_ids[0, 0].item() == bos
    if prepend_bos is None:
        prepend_bos = has_bos
    elif prepend_bos and not has_bos:
        raise ValueError("prepend_bos=True mais le tokeniseur n'ajoute pas de jeton <bos> en tête du texte.")
    if n < 2:
        raise ValueError("Le texte doit compter au moins 2 jetons : le premier n'est jamais prédit.")
    content = max_length - 1 if prepend_bos else max_length  # jetons du texte par fenêtre
    if stride is None:
        if n > max_length:
            raise ValueError(
                f"Le texte compte {n} jetons, plus que la fenêtre de contexte ({max_length}) : "
                f"passez stride=… (entre 1 et {content}) pour la méthode de la fenêtre glissante."
            )
        stride = content
    else:
        stride = check_int("stride", stride, min=1, max=content)  # au plus les jetons du texte par fenêtre
    nll = token_nll(model, input_ids, max_length=max_length, stride=stride, bos_id=bos if prepend_bos else None)
    return math.exp(nll.mean().item())
