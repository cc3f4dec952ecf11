"""Génération de texte refaite à la main : filtrage des logits et boucle d'échantillonnage.

Utilisé par le chapitre « Anatomie d'un LLM » (``book/01_anatomie.md``).

:func:`filter_logits` applique, dans l'ordre de ``model.generate`` de
transformers (``GenerationMixin._get_logits_processor``) :

1. pénalité de répétition (CTRL, Keskar et al., 2019) ;
2. température ;
3. top-k ;
4. top-p (échantillonnage « nucleus », Holtzman et al., 2020).

Les entrées retirées valent ``-inf``. :func:`generate` déroule la boucle
autorégressive avec le cache clés/valeurs du modèle et reproduit
``model.generate`` jeton pour jeton (glouton), et aussi en échantillonnage
pour une même graine.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from atelier.runtime.checks import check_float, check_int, check_type


def check_sampling_params(temperature, top_k, top_p, repetition_penalty, min_tokens_to_keep=1):
    """Valide les paramètres de filtrage (voir :mod:`atelier.runtime.checks`) ; les renvoie en types Python."""
    try:
        temperature = check_float("temperature", temperature, min=0, min_open=True)
    except ValueError as exc:
        raise ValueError(f"{exc} Pour un décodage glouton, utilisez do_sample=False.") from None
    return (temperature,
            check_int("top_k", top_k, min=0),  # 0 = désactivé
            check_float("top_p", top_p, min=0, max=1, min_open=True),  # 1.0 = désactivé
            check_float("repetition_penalty", repetition_penalty, min=0, min_open=True),  # 1.0 = aucune pénalité
            check_int("min_tokens_to_keep", min_tokens_to_keep, min=1))


def penalize_repetition(scores, previous_ids, penalty):
    """Pénalité de répétition (CTRL) sur ``scores`` ``(B, V)`` : le logit d'un jeton déjà vu
    est divisé par ``penalty`` s'il est positif, multiplié s'il est négatif.

    ``previous_ids`` : ``(B, T)`` identifiants déjà présents (validés par :func:`filter_logits`).
    """
    seen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, previous_ids, True)  # (B, V)
    penalized = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen, penalized, scores)


def top_k_filter(scores, k):
    """Garde les ``k`` plus grands logits de chaque ligne de ``scores`` ``(B, V)`` (les ex aequo
    du k-ième restent) ; les autres valent ``-inf``."""
    kth = torch.topk(scores, k, dim=-1).values[:, -1:]  # (B, 1)
    return scores.masked_fill(scores < kth, float("-inf"))


def top_p_filter(scores, p, min_tokens_to_keep=1):
    """Échantillonnage « nucleus » : garde le plus petit ensemble de jetons les plus probables
    dont la masse atteint ``p`` (au moins ``min_tokens_to_keep``) ; ``scores`` ``(B, V)``."""
    sorted_scores, order = torch.sort(scores, descending=False)  # croissant
    cum = sorted_scores.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    remove_sorted = cum <= (1 - p)  # masse « de queue » inférieure à 1 - p
    remove_sorted[:, -min_tokens_to_keep:] = False
    remove = remove_sorted.scatter(1, order, remove_sorted)  # retour à l'ordre du vocabulaire
    return scores.masked_fill(remove, float("-inf"))


def check_logits(logits) -> None:
    """Vérifie des logits du prochain jeton : tenseur flottant ``(V,)`` ou ``(B, V)``, ni NaN ni ``+inf``,
    et au moins un jeton possible (logit ``> -inf``) par ligne ; ``-inf`` marque un jeton déjà retiré."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        kind = f"un tenseur {logits.dtype}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TypeError(f"logits doit être un torch.Tensor flottant de forme (V,) ou (B, V) ; reçu {kind}.")
    if logits.dim() not in (1, 2) or logits.shape[-1] == 0:
        raise ValueError(f"logits doit avoir la forme (V,) ou (B, V) avec V ≥ 1, reçu {tuple(logits.shape)}.")
    if torch.isnan(logits).any() or torch.isposinf(logits).any():
        raise ValueError("logits contient des NaN ou des +inf : aucune probabilité n'en sort (seul -inf est "
                         "accepté, pour un jeton retiré). Vérifiez le modèle ou la précision de calcul.")
    if torch.isneginf(logits).all(dim=-1).any():
        raise ValueError("logits : une ligne ne vaut que -inf, aucun jeton n'y reste possible.")


def check_previous_ids(previous_ids, B, V, device):
    """``previous_ids`` en tenseur ``(B, T)`` d'identifiants valides (une suite 1-D vaut pour chaque ligne)."""
    if previous_ids is None:
        raise ValueError("repetition_penalty ≠ 1 exige previous_ids (les jetons déjà présents).")
    try:
        prev = torch.as_tensor(previous_ids, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"previous_ids doit être un tenseur ou une liste d'entiers, reçu {type(previous_ids).__name__}.") from None
    if prev.is_floating_point() or prev.is_complex() or prev.dtype == torch.bool:
        raise TypeError(f"previous_ids doit contenir des identifiants entiers, reçu le type {prev.dtype}.")
    prev = prev.long()
    prev = prev.expand(B, -1) if prev.dim() == 1 else prev  # (B, T)
    if prev.dim() != 2 or prev.shape[0] != B:
        raise ValueError(f"previous_ids doit avoir la forme (T,) ou ({B}, T), reçu {tuple(prev.shape)}.")
    if prev.numel() and (prev.min() < 0 or prev.max() >= V):
        raise ValueError(f"previous_ids contient des identifiants hors du vocabulaire [0, {V - 1}] ; "
                         f"reçu de {prev.min().item()} à {prev.max().item()}.")
    return prev


def filter_logits(
    logits,
    *,
    temperature=1.0,
    top_k=0,
    top_p=1.0,
    repetition_penalty=1.0,
    previous_ids=None,
    min_tokens_to_keep=1,
):
    """Transforme les logits du prochain jeton comme le fait ``model.generate``.

    ``logits`` : ``(V,)`` ou ``(B, V)``. ``previous_ids`` : jetons déjà vus
    (prompt compris), ``(B, T)``, ou ``(T,)`` pour toutes les lignes ; requis si ``repetition_penalty ≠ 1``.
    ``top_k=0`` et ``top_p=1.0`` désactivent ces filtres. ``min_tokens_to_keep``
    garantit qu'au moins ce nombre de jetons survivent à top-k et top-p.

    Renvoie un nouveau tenseur de même forme, les jetons retirés valant ``-inf``.
    """
    check_logits(logits)  # tenseur flottant (V,) ou (B, V), sans NaN ni +inf, au moins un jeton possible par ligne
    temperature, top_k, top_p, repetition_penalty, min_tokens_to_keep = check_sampling_params(
        temperature, top_k, top_p, repetition_penalty, min_tokens_to_keep)
    squeeze = logits.dim() == 1
    scores = logits.unsqueeze(0) if squeeze else logits.clone()  # (B, V)
    B, V = scores.shape

    # L'ordre de model.generate : pénalité, température, top-k, top-p.
    if repetition_penalty != 1.0:
        prev = check_previous_ids(previous_ids, B, V, scores.device)  # (B, T)
        scores = penalize_repetition(scores, prev, repetition_penalty)
    if temperature != 1.0:  # T > 1 aplatit la distribution, T < 1 l'accentue
        scores = scores / temperature
    if top_k > 0:
        scores = top_k_filter(scores, min(max(top_k, min_tokens_to_keep), V))
    if top_p < 1.0:
        scores = top_p_filter(scores, top_p, min_tokens_to_keep)
    return scores.squeeze(0) if squeeze else scores


def context_window(model) -> int | None:
    """Fenêtre de contexte d'un modèle (``n_positions`` ou ``max_position_embeddings`` de sa
    configuration), ou ``None`` si la configuration n'en donne pas."""
    cfg = model.config
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(cfg, name, None)
        if isinstance(value, int):
            return value
    return None


def _eos_ids(model, tokenizer):
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)


def next_token(logits, ids, *, do_sample, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0):
    """Jeton suivant de chaque ligne : logits du dernier jeton ``(B, V)`` → identifiants ``(B,)``.

    ``ids`` : ``(B, T)`` jetons déjà présents (pour la pénalité de répétition).
    """
    if do_sample:  # tirage selon les probabilités filtrées
        logits = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                               repetition_penalty=repetition_penalty, previous_ids=ids)
        return torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1).squeeze(1)
    if repetition_penalty != 1.0:  # glouton : seule la pénalité change l'argmax
        logits = filter_logits(logits, repetition_penalty=repetition_penalty, previous_ids=ids)
    return logits.argmax(dim=-1)


@torch.no_grad()
def generate_ids(
    model,
    input_ids,
    *,
    max_new_tokens=20,
    do_sample=False,
    temperature=1.0,
    top_k=0,
    top_p=1.0,
    repetition_penalty=1.0,
    num_return_sequences=1,
    eos_token_id=None,
    pad_token_id=None,
    seed=None,
    choose=None,
):
    """Boucle autorégressive sur des identifiants : renvoie ``(B·n, T + nouveaux)``.

    ``choose`` : la fonction qui choisit le jeton suivant, de même signature que
    :func:`next_token` (par défaut) ; un chapitre y passe sa propre copie.

    Chaque étape : logits du dernier jeton → :func:`filter_logits` → argmax
    (glouton) ou tirage ``torch.multinomial`` (échantillonnage). Une séquence qui
    a produit un jeton de fin reçoit ensuite ``pad_token_id`` ; on s'arrête
    quand toutes ont fini ou après ``max_new_tokens`` jetons.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError("input_ids doit être un tenseur (B, T) non vide, sans remplissage.")
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, min=1)
    num_return_sequences = check_int("num_return_sequences", num_return_sequences, min=1)
    if num_return_sequences > 1 and not do_sample:
        raise ValueError(
            "num_return_sequences > 1 n'a de sens qu'avec do_sample=True : "
            "le décodage glouton donnerait des copies identiques."
        )
    temperature, top_k, top_p, repetition_penalty, _ = check_sampling_params(temperature, top_k, top_p, repetition_penalty)
    window = context_window(model)
    if window is not None and input_ids.shape[1] + max_new_tokens > window:
        raise ValueError(
            f"Le prompt ({input_ids.shape[1]} jetons) plus max_new_tokens ({max_new_tokens}) dépasse la "
            f"fenêtre de contexte du modèle ({window} jetons) : raccourcissez l'un ou l'autre."
        )
    eos = [] if eos_token_id is None else ([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id))
    if eos and pad_token_id is None:
        pad_token_id = eos[0]
    if choose is None:
        choose = next_token
    elif not callable(choose):
        raise TypeError(f"choose doit être une fonction comme next_token, reçu {type(choose).__name__}.")
    if seed is not None:
        torch.manual_seed(seed)

    ids = input_ids.repeat_interleave(num_return_sequences, dim=0)  # (B·n, T)
    unfinished = torch.ones(ids.shape[0], dtype=torch.bool, device=ids.device)
    eos_tensor = torch.tensor(eos, dtype=torch.long, device=ids.device)
    past, step_input = None, ids
    for _ in range(max_new_tokens):
        out = model(input_ids=step_input, past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[:, -1, :].float()  # (B·n, V)
        next_ids = choose(logits, ids, do_sample=do_sample, temperature=temperature, top_k=top_k,
                          top_p=top_p, repetition_penalty=repetition_penalty)  # (B·n,)
        if eos:
            next_ids = torch.where(unfinished, next_ids, torch.full_like(next_ids, pad_token_id))
        ids = torch.cat([ids, next_ids[:, None]], dim=1)
        step_input = next_ids[:, None]
        if eos:
            unfinished &= ~torch.isin(next_ids, eos_tensor)
            if not unfinished.any():
                break
    return ids


def generate(model, tokenizer, prompt, **params):
    """Génère des suites de ``prompt`` : renvoie une liste de ``num_return_sequences`` chaînes.

    Chaque chaîne est la **suite** générée seule (sans le prompt), jetons
    spéciaux retirés. Paramètres : ceux de :func:`generate_ids`
    (``max_new_tokens``, ``do_sample``, ``temperature``, ``top_k``, ``top_p``,
    ``repetition_penalty``, ``num_return_sequences``, ``seed``).
    """
    check_type("prompt", prompt, str)
    if not prompt.strip():
        raise ValueError("Le prompt est vide : donnez au moins un mot à compléter.")
    unknown = set(params) - {
        "max_new_tokens", "do_sample", "temperature", "top_k", "top_p",
        "repetition_penalty", "num_return_sequences", "seed",
    }
    if unknown:
        raise TypeError(f"Paramètre(s) inconnu(s) : {', '.join(sorted(unknown))}.")
    input_ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(model.device)  # (1, T)
    eos = _eos_ids(model, tokenizer)
    pad = getattr(getattr(model, "generation_config", None), "pad_token_id", None)
    if pad is None:
        pad = tokenizer.pad_token_id
    ids = generate_ids(model, input_ids, eos_token_id=eos or None, pad_token_id=pad, **params)
    return tokenizer.batch_decode(ids[:, input_ids.shape[1]:], skip_special_tokens=True)


# --- Mesures sur les sorties (expériences du chapitre) -----------------------


def entropy(logits):
    """Entropie (en nats) de ``softmax(logits)`` sur le dernier axe ; les ``-inf`` comptent pour 0."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    return -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(-1)


def distinct_n(sequences: Sequence[Sequence], n: int = 2) -> float:
    """Proportion de n-grammes distincts parmi tous les n-grammes des séquences (Li et al., 2016).

    Chaque séquence est une liste de jetons (ou de mots). 1.0 = aucun n-gramme répété.
    """
    n = check_int("n", n, min=1)
    grams = [tuple(seq[i:i + n]) for seq in sequences for i in range(len(seq) - n + 1)]
    if not grams:
        raise ValueError(f"Aucun {n}-gramme : les séquences sont trop courtes.")
    return len(set(grams)) / len(grams)


def repetition_rate(tokens: Sequence) -> float:
    """Part des jetons qui répètent un jeton déjà vu dans la même séquence (0 = aucun)."""
    if len(tokens) == 0:
        raise ValueError("La séquence est vide.")
    seen, repeats = set(), 0
    for t in tokens:
        repeats += t in seen
        seen.add(t)
    return repeats / len(tokens)
