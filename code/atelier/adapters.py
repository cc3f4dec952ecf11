"""Adaptateurs LoRA avec ``peft`` : un seul point d'entrée, :func:`add_lora`.

Utilisé par les chapitres « CamemBERT ou CamemBERTa ? » (classifieur NLI,
tâche ``SEQ_CLS``), « LoRA et NF4 » (modèle de conversation, tâche
``CAUSAL_LM``) et « Affinage d'embeddings ou de modèle ? » (encodeur nu,
``task=None``), et par :mod:`atelier.lora_nf4.lora` (réglages vérifiés par
:func:`check_rank_alpha`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from atelier.runtime.checks import check_choice, check_float, check_int

__all__ = ["TASKS", "check_rank_alpha", "linear_layer_names", "add_lora"]

# classification de séquences (chapitre 03), modèle de langage (chapitre 04), encodeur sans tête (chapitre 05)
TASKS = ("SEQ_CLS", "CAUSAL_LM", None)


def check_rank_alpha(r, alpha, dropout) -> tuple[int, float, float]:
    """Vérifie les réglages d'un adaptateur LoRA : rang ``r`` entier > 0, ``alpha`` > 0, ``dropout`` dans [0, 1[.

    Renvoie ``(r, alpha, dropout)`` en types Python ; lève ``TypeError`` ou ``ValueError``
    (:mod:`atelier.runtime.checks`) avec un message qui dit ce qui est accepté ;
    utilisé par :func:`add_lora` et par le LoRA refait à la main (:mod:`atelier.lora_nf4.lora`).
    """
    return (check_int("r (le rang)", r, min=1),
            check_float("alpha", alpha, min=0, min_open=True),
            check_float("dropout", dropout, min=0, max=1, max_open=True))


def linear_layer_names(model: nn.Module) -> list[str]:
    """Noms courts (dernier composant) des couches ``nn.Linear`` du modèle (NF4 compris), triés."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model doit être un torch.nn.Module, reçu {type(model).__name__}.")
    return sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, nn.Linear)})


def add_lora(model: nn.Module, target_modules: Sequence[str], *, task: str | None, r: int = 8, alpha: float = 16,
             dropout: float = 0.0, modules_to_save: Sequence[str] | None = None):
    """Enveloppe ``model`` avec des adaptateurs LoRA (``peft``) sur ``target_modules`` ; seuls eux s'entraînent.

    ``task`` : ``"SEQ_CLS"`` (classifieur : la tête reste entraînable),
    ``"CAUSAL_LM"`` (modèle de langage) ou ``None`` (encodeur nu, sans tête). Chaque nom visé doit désigner une
    couche linéaire du modèle ; sinon, ``ValueError`` en français avec la liste
    des couches disponibles (``query``/``value`` sur RoBERTa,
    ``query_proj``/``value_proj`` sur DeBERTa-v2, ``q_proj``… sur Llama).
    """
    from peft import LoraConfig, get_peft_model

    check_choice("task", task, TASKS)
    if isinstance(target_modules, str) or not target_modules or not all(isinstance(t, str) for t in target_modules):
        raise TypeError("target_modules doit être une liste non vide de noms de couches, par ex. ['query', 'value'].")
    available = linear_layer_names(model)
    unknown = [t for t in target_modules if t not in available]
    if unknown:
        raise ValueError(
            f"Modules LoRA introuvables dans {type(model).__name__} : {unknown}. "
            f"Couches linéaires disponibles : {', '.join(available)}."
        )
    r, alpha, dropout = check_rank_alpha(r, alpha, dropout)
    cfg = LoraConfig(task_type=task, r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                     target_modules=list(target_modules),
                     modules_to_save=list(modules_to_save) if modules_to_save else None)
    return get_peft_model(model, cfg)
