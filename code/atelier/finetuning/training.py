"""Boucles d'entraînement du chapitre 05 : lots groupés par longueur, AdamW, paires contrastives (SetFit)."""

from __future__ import annotations

import numpy as np
import torch

from atelier.finetuning.encoders import autocast, set_checkpointing
from atelier.finetuning.fewshot import check_texts
from atelier.runtime.checks import check_float, check_int, check_type
from atelier.runtime.config import grad_scaler, model_device, to_device


def _check_lengths(lengths, n_items: int | None = None) -> list[int]:
    if isinstance(lengths, (str, bytes)):
        raise TypeError("lengths doit être une liste d'entiers (jetons par exemple), pas une chaîne.")
    lengths = [check_int("lengths (chaque longueur)", n, min=0) for n in lengths]
    if not lengths:
        raise ValueError("lengths est vide : il faut au moins un exemple.")
    if n_items is not None and len(lengths) != n_items:
        raise ValueError(f"lengths compte {len(lengths)} longueurs pour n_items={n_items} exemples : il en faut une par exemple.")
    return lengths


def length_grouped_batches(lengths, batch_size: int, generator: torch.Generator, group: int = 16) -> list[list[int]]:
    """Lots d'indices mélangés, mais de longueurs voisines.

    Le regroupement est celui de transformers (``get_length_grouped_indices``, la
    fonction de ``LengthGroupedSampler`` qu'utilise ``group_by_length`` du
    ``Trainer``) : on mélange, on découpe en « méga-lots » de ``group × batch_size``
    exemples (transformers en prend moins pour un petit jeu, au point de ne plus
    rien regrouper sous 4 lots par méga-lot), on trie chacun par longueur décroissante. On coupe ensuite en lots, puis on
    mélange l'ordre des lots (transformers les laisse dans l'ordre des longueurs
    décroissantes, d'où une dérive de la longueur au fil de chaque méga-lot) :
    moins de remplissage, donc moins de calcul perdu, sans ordre systématique.
    """
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = _check_lengths(lengths)
    batch_size, group = check_int("batch_size", batch_size, min=1), check_int("group", group, min=1)
    check_type("generator", generator, torch.Generator)
    order = get_length_grouped_indices(lengths, batch_size, mega_batch_mult=group, generator=generator)
    batches = [order[j:j + batch_size] for j in range(0, len(order), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def train_loop(compute_loss, param_groups, n_items: int, *, epochs: int, batch_size: int, seed: int,
                warmup_ratio: float, weight_decay: float, max_grad_norm: float = 1.0,
                lengths=None, max_items: int | None = None, scaler=None) -> list[float]:
    """Boucle AdamW + planning linéaire avec échauffement ; ``compute_loss(indices)`` -> perte.

    Avec ``lengths`` (nombre de jetons de chaque exemple), les lots regroupent des
    exemples de longueurs voisines (:func:`length_grouped_batches`). Avec
    ``max_items``, l'entraînement s'arrête après ce nombre d'exemples (dernier lot
    raccourci) : un budget de calcul fixe, même si les époques ne sont pas finies.
    ``scaler`` : le ``GradScaler`` d'un calcul en float16 (:func:`atelier.runtime.config.grad_scaler`) ;
    sans lui, la perte est rétropropagée telle quelle.
    """
    from transformers import get_linear_schedule_with_warmup

    if not callable(compute_loss):
        raise TypeError(f"compute_loss doit être une fonction (indices -> perte), reçu {type(compute_loss).__name__}.")
    n_items = check_int("n_items", n_items, min=1)
    epochs, batch_size = check_int("epochs", epochs, min=1), check_int("batch_size", batch_size, min=1)
    seed = check_int("seed", seed, min=0)
    check_float("warmup_ratio", warmup_ratio, min=0, max=1, max_open=True)
    check_float("weight_decay", weight_decay, min=0)
    check_float("max_grad_norm", max_grad_norm, min=0, min_open=True)
    if lengths is not None:
        lengths = _check_lengths(lengths, n_items)
    if max_items is not None:
        max_items = check_int("max_items", max_items, min=1)
    scaler = grad_scaler("cpu", enabled=False) if scaler is None else check_type("scaler", scaler, torch.amp.GradScaler)
    params = [p for g in param_groups for p in g["params"]]
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(epochs):
        if lengths is None:
            order = torch.randperm(n_items, generator=gen).tolist()
            batches += [order[i:i + batch_size] for i in range(0, n_items, batch_size)]
        else:
            batches += length_grouped_batches(lengths, batch_size, gen)
    if max_items is not None:
        kept, left = [], max_items
        for idx in batches:
            if left <= 0:
                break
            kept.append(idx[:left])
            left -= len(kept[-1])
        batches = kept
    total = len(batches)
    try:  # version « fused » : un seul noyau pour tous les paramètres, ~15× plus rapide sur CPU
        opt = torch.optim.AdamW(param_groups, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - torch < 2.4
        opt = torch.optim.AdamW(param_groups, weight_decay=weight_decay)
    sched = get_linear_schedule_with_warmup(opt, int(warmup_ratio * total), total)
    losses = []
    for idx in batches:
        loss = compute_loss(idx)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)  # le seuil de max_grad_norm porte sur les vrais gradients
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        scaler.step(opt)
        scaler.update()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return losses


def contrastive_finetune(encoder, texts_a, texts_b, targets, *, loss: str = "cosine", epochs: int = 1,
                         batch_size: int = 16, lr: float = 2e-5, seed: int = 0, prefix: str = "",
                         max_length: int = 64, warmup_ratio: float = 0.1, weight_decay: float = 0.01,
                         gradient_checkpointing: bool = False, bf16: bool = False,
                         freeze_word_embeddings: bool = False) -> list[float]:
    """Affine **en place** un encodeur sentence-transformers sur des paires de textes.

    ``loss="cosine"`` : ``CosineSimilarityLoss`` (cosinus ramené vers ``targets`` ∈ [0, 1]) ;
    ``loss="mnrl"`` : ``MultipleNegativesRankingLoss`` (paires positives seulement,
    les autres phrases du lot servent de négatifs ; ``targets`` ignoré) ;
    ``loss="cosent"`` : ``CoSENTLoss`` (ordre des cosinus des paires du lot ramené vers
    celui des ``targets``, quelle que soit leur échelle).
    ``freeze_word_embeddings`` gèle la table des plongements de mots (elle reste gelée).
    Renvoie la perte de chaque pas.
    """
    from sentence_transformers.sentence_transformer import losses

    texts_a, texts_b = check_texts(texts_a, name="texts_a"), check_texts(texts_b, name="texts_b")
    targets = np.asarray(targets, dtype=np.float32)
    if targets.ndim != 1 or not np.isfinite(targets).all():
        raise ValueError("targets doit être une suite de nombres finis (une cible par paire), sans NaN.")
    check_float("lr", lr, min=0, min_open=True)
    max_length = check_int("max_length", max_length, min=1)
    check_type("prefix", prefix, str)
    if not len(texts_a) == len(texts_b) == len(targets):
        raise ValueError(f"texts_a ({len(texts_a)}), texts_b ({len(texts_b)}) et targets ({len(targets)}) "
                         "doivent avoir la même longueur.")
    if loss == "cosine":
        if targets.min() < 0 or targets.max() > 1:
            raise ValueError("Avec loss='cosine', les cibles doivent être dans [0, 1] (score / 5 pour STS-B).")
        loss_fn = losses.CosineSimilarityLoss(encoder)
    elif loss == "mnrl":
        loss_fn = losses.MultipleNegativesRankingLoss(encoder)
    elif loss == "cosent":
        loss_fn = losses.CoSENTLoss(encoder)
    else:
        raise ValueError(f"Perte inconnue : {loss!r}. Pertes acceptées : 'cosine', 'mnrl', 'cosent'.")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} doit être un entier ≥ 1, reçu {value!r}.")
    encoder.max_seq_length = max_length
    hf = encoder[0].auto_model
    if freeze_word_embeddings:
        hf.embeddings.word_embeddings.requires_grad_(False)
    if gradient_checkpointing:
        set_checkpointing(hf, True)
    encoder.train()
    torch.manual_seed(seed)
    device = model_device(encoder)

    def compute_loss(idx):
        fa = to_device(encoder.preprocess([prefix + texts_a[i] for i in idx]), device)
        fb = to_device(encoder.preprocess([prefix + texts_b[i] for i in idx]), device)
        with autocast(bf16, device):
            return loss_fn([fa, fb], torch.from_numpy(targets[idx]).to(device)).float()

    params = [p for p in encoder.parameters() if p.requires_grad]
    n_tokens = lambda texts: [len(ids) for ids in encoder.tokenizer([prefix + t for t in texts], truncation=True,
                                                                    max_length=max_length)["input_ids"]]
    lengths = [max(a, b) for a, b in zip(n_tokens(texts_a), n_tokens(texts_b))]
    try:
        return train_loop(compute_loss, [{"params": params, "lr": lr}], len(texts_a), epochs=epochs,
                           batch_size=batch_size, seed=seed, warmup_ratio=warmup_ratio, weight_decay=weight_decay,
                           lengths=lengths, scaler=grad_scaler(device, enabled=bf16))
    finally:
        encoder.eval()
        if gradient_checkpointing:
            set_checkpointing(hf, False)


def contrastive_pairs(y, *, iterations: int = 1, seed: int = 0, max_pairs: int | None = None):
    """Paires façon SetFit : pour chaque exemple, une paire même classe (cible 1) et une paire
    classe différente (cible 0), ``iterations`` fois. Renvoie (indices_a, indices_b, cibles)."""
    y = np.asarray(y)
    iterations = check_int("iterations", iterations, min=1)
    if max_pairs is not None:
        max_pairs = check_int("max_pairs", max_pairs, min=2)
    rng = np.random.default_rng(check_int("seed", seed, min=0))
    by_class = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    if len(by_class) < 2:
        raise ValueError("Il faut au moins deux classes pour former des paires négatives.")
    if min(len(v) for v in by_class.values()) < 2:
        raise ValueError("Il faut au moins deux exemples par classe pour former des paires positives.")
    a, b, t = [], [], []
    for _ in range(iterations):
        for i in rng.permutation(len(y)):
            same = by_class[y[i]]
            j = rng.choice(same[same != i])
            k = rng.choice(np.flatnonzero(y != y[i]))
            a += [i, i]
            b += [int(j), int(k)]
            t += [1.0, 0.0]
    a, b, t = np.array(a), np.array(b), np.array(t, dtype=np.float32)
    if max_pairs is not None and len(a) > max_pairs:
        keep = rng.permutation(len(a))[:max_pairs]
        a, b, t = a[keep], b[keep], t[keep]
    return a, b, t


# --------------------------------------------------------------------------- classifieurs
