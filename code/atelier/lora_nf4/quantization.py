"""Chargement en 4 bits (ou 8 bits) avec bitsandbytes, partagé par le chapitre 04.

Utilisé par :mod:`atelier.lora_nf4.memory` (mesure des modèles chargés),
:mod:`atelier.lora_nf4.sft` (QLoRA) et :mod:`atelier.lora_nf4.chat` (interface) :

- :func:`quantization_config` : le ``BitsAndBytesConfig`` d'une précision, calcul
  à la précision du livre (:func:`atelier.runtime.config.compute_dtype`) ;
- :func:`packed_for_inference` et :func:`keep_4bit_trainable` : éviter que
  bitsandbytes réorganise les couches NF4 d'un modèle à entraîner.
"""

from __future__ import annotations

import contextlib

__all__ = [
    "PRECISIONS",
    "check_precision",
    "quantization_config",
    "linear4bit_layers",
    "packed_for_inference",
    "keep_4bit_trainable",
]

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "nf4")


def check_precision(precision, allowed=PRECISIONS) -> str:
    """Vérifie qu'une précision fait partie de ``allowed`` (``ValueError`` sinon) et la renvoie."""
    if precision not in allowed:
        raise ValueError(f"Précision inconnue : {precision!r}. Valeurs acceptées : {', '.join(allowed)}.")
    return precision


def quantization_config(precision: str, double_quant: bool = False, compute_dtype=None, device=None):
    """``BitsAndBytesConfig`` pour ``int8`` ou ``nf4`` (``None`` pour les types pleins).

    ``compute_dtype`` : type des calculs des couches NF4 ; par défaut celui du
    livre pour ``device`` (:func:`atelier.runtime.config.compute_dtype` : bf16 seulement
    là où le matériel le calcule, fp32 sur un CPU sans bfloat16 natif).
    """
    from transformers import BitsAndBytesConfig

    from atelier.runtime import config

    check_precision(precision)
    if compute_dtype is None:
        compute_dtype = config.compute_dtype(device)
    if precision == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    if precision == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_use_double_quant=double_quant, bnb_4bit_compute_dtype=compute_dtype)
    return None


def linear4bit_layers(model) -> list:
    """Les couches ``Linear4bit`` de bitsandbytes d'un modèle (liste vide sans bitsandbytes)."""
    from torch import nn

    from atelier.runtime.checks import check_type

    check_type("model", model, nn.Module)
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:  # pragma: no cover - bitsandbytes absent : aucune couche 4 bits
        return []
    return [m for m in model.modules() if isinstance(m, Linear4bit)]


def packed_for_inference(model) -> int:
    """Nombre de couches 4 bits que bitsandbytes a réorganisées pour son noyau CPU d'inférence.

    Sur un CPU AVX512-BF16, bitsandbytes 0.50 réorganise une couche NF4 au
    premier passage en mode ``eval`` sans gradient ; ce format n'a pas de
    rétropropagation (les gradients qui le traversent sont faux) et le retour
    au format d'origine n'est pas exact. Il faut donc éviter qu'un modèle à
    entraîner passe par là : voir :func:`keep_4bit_trainable`.
    """
    return sum(bool(getattr(m.weight.quant_state, "packing_format_for_cpu", False))
               for m in linear4bit_layers(model) if getattr(m.weight, "quant_state", None) is not None)


@contextlib.contextmanager
def keep_4bit_trainable(model):
    """Évalue ou génère sans que bitsandbytes réorganise les couches 4 bits (voir :func:`packed_for_inference`).

    Le drapeau ``training`` des seules couches ``Linear4bit`` reste vrai (il ne
    sert qu'à ce choix de noyau) ; les autres modules, dropout compris, restent
    dans le mode demandé.
    """
    layers = linear4bit_layers(model)
    flags = [m.training for m in layers]
    for m in layers:
        m.training = True
    try:
        yield model
    finally:
        for m, flag in zip(layers, flags):
            m.training = flag
