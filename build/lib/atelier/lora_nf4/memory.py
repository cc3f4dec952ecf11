"""Calculatrice de mémoire du fine-tuning, à partir de la configuration d'un modèle.

Utilisé par le chapitre « LoRA et NF4 : adapter un modèle de chat français »
(``book/04_lora_nf4.md``). Le modèle est instancié sur le périphérique
``meta`` (formes exactes, aucune mémoire), puis chaque paramètre est compté
selon son rôle :

- les couches ``nn.Linear`` des blocs (pas la tête de sortie) sont celles que
  bitsandbytes quantifie en 8 bits (``int8``) ou en 4 bits (``nf4``) ;
- le reste (plongements, normalisations, tête de sortie) garde le type de
  chargement (``bf16`` par défaut).

:func:`weights_memory` donne la mémoire des poids chargés ; :func:`finetune_memory`
y ajoute gradients et états de l'optimiseur (AdamW) pour un fine-tuning
complet, LoRA ou QLoRA, et une estimation des activations.
:func:`measure_loaded` charge pour de vrai un modèle et mesure ce qu'il occupe,
pour valider la calculatrice (``tests/test_memory.py``).
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
from collections.abc import Iterable

import torch
from torch import nn

from atelier.lora_nf4.quantization import PRECISIONS, check_precision, keep_4bit_trainable, quantization_config

__all__ = [
    "PRECISIONS",
    "meta_model",
    "weights_memory",
    "finetune_memory",
    "activation_memory",
    "tensor_bytes",
    "measure_loaded",
    "quantization_config",
]

# Octets par paramètre pour les types « pleins ».
_FLOAT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
_TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def as_config(config):
    """PretrainedConfig, dict (avec ``model_type``) ou dossier local → PretrainedConfig."""
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(config, PretrainedConfig):
        return config
    if isinstance(config, dict):
        if "model_type" not in config:
            raise ValueError("Le dictionnaire de configuration doit contenir 'model_type' (par exemple 'llama').")
        kwargs = {k: v for k, v in config.items() if k != "model_type"}
        return AutoConfig.for_model(config["model_type"], **kwargs)
    if isinstance(config, (str, os.PathLike)):
        return AutoConfig.from_pretrained(str(config))
    raise TypeError(
        f"config doit être une PretrainedConfig, un dict ou un chemin de modèle, reçu {type(config).__name__}."
    )


def meta_model(config) -> nn.Module:
    """Le modèle causal de ``config`` sur le périphérique ``meta`` : formes exactes, zéro octet."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(as_config(config))


def split_parameters(model: nn.Module) -> dict:
    """Sépare les paramètres quantifiables (Linear des blocs) du reste ; poids partagés comptés une fois."""
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    seen: set[int] = set()
    linear = []  # (nom, in, out, a_un_biais)
    other = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module is not out_emb:
            linear.append((name, module.in_features, module.out_features))
            seen.add(id(module.weight))
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        other += p.numel()
    return {"linear": linear, "other": other}


def quantized_linear_bytes(n: int, out_features: int, precision: str, double_quant: bool, block_size: int) -> tuple[int, int]:
    """(octets des poids, octets des constantes) d'une couche Linear de n poids."""
    if precision == "int8":
        return n, 4 * out_features  # int8 + une échelle float32 par ligne (SCB)
    codes = math.ceil(n / 2)  # deux codes 4 bits par octet
    n_blocks = math.ceil(n / block_size)
    if not double_quant:
        return codes, 4 * n_blocks  # une constante absmax float32 par bloc
    # absmax en 8 bits, puis une constante float32 par bloc de 256, un décalage et la table de 256 valeurs
    return codes, n_blocks + 4 * math.ceil(n_blocks / 256) + 4 + 4 * 256


def weights_memory(config, precision: str = "bf16", other_dtype: str = "bf16", double_quant: bool = False,
                   block_size: int = 64) -> dict:
    """Mémoire des poids d'un modèle chargé en ``precision``, en octets.

    ``precision`` : ``fp32``, ``fp16``, ``bf16`` (tout le modèle dans ce type),
    ``int8`` ou ``nf4`` (Linear des blocs quantifiées, le reste en
    ``other_dtype``). Renvoie le détail : paramètres, octets des poids
    quantifiés, des constantes de quantification, du reste, et le total.
    """
    check_precision(precision)
    check_precision(other_dtype, tuple(_FLOAT_BYTES))
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size <= 0:
        raise ValueError(f"block_size doit être un entier strictement positif, reçu {block_size!r}.")
    parts = split_parameters(meta_model(config) if not isinstance(config, nn.Module) else config)
    n_linear = sum(i * o for _, i, o in parts["linear"])
    n_other = parts["other"]
    info = {"precision": precision, "n_parameters": n_linear + n_other, "n_linear": n_linear, "n_other": n_other}
    if precision in _FLOAT_BYTES:
        b = _FLOAT_BYTES[precision]
        info.update(linear_bytes=n_linear * b, constants_bytes=0, other_bytes=n_other * b)
    else:
        w = c = 0
        for _, i, o in parts["linear"]:
            wi, ci = quantized_linear_bytes(i * o, o, precision, double_quant, block_size)
            w, c = w + wi, c + ci
        info.update(linear_bytes=w, constants_bytes=c, other_bytes=n_other * _FLOAT_BYTES[other_dtype])
    info["total_bytes"] = info["linear_bytes"] + info["constants_bytes"] + info["other_bytes"]
    info["bits_per_parameter"] = 8 * info["total_bytes"] / info["n_parameters"]
    return info


def activation_memory(config, batch_size: int, seq_len: int, checkpointing: bool = True, bytes_per_value: int = 2) -> int:
    """Ordre de grandeur des activations gardées pour la rétropropagation, en octets.

    Formule de Korthikanti et al. (2022) pour un bloc de transformeur avec une
    attention « flash » (sans la matrice s × s) : environ 34·s·b·h octets en
    16 bits, soit 17 valeurs par position et par dimension. Avec le
    *gradient checkpointing*, on ne garde que l'entrée de chaque bloc
    (s·b·h valeurs) plus les activations d'un seul bloc recalculé. S'y ajoutent
    les logits (s·b·vocabulaire, en float32).
    """
    cfg = as_config(config) if not isinstance(config, nn.Module) else config.config
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    for name, v in (("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} doit être un entier strictement positif, reçu {v!r}.")
    sbh = seq_len * batch_size * cfg.hidden_size
    per_layer = 17 * sbh * bytes_per_value
    layers = cfg.num_hidden_layers
    kept = (layers * sbh * bytes_per_value + per_layer) if checkpointing else layers * per_layer
    return int(kept + seq_len * batch_size * cfg.vocab_size * 4)


def finetune_memory(config, method: str = "qlora", r: int = 16, target_modules: Iterable[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
                    weight_precision: str | None = None, grad_bytes: int | None = None, optimizer_bytes: int = 8,
                    master_bytes: int = 0, double_quant: bool = True, batch_size: int = 0, seq_len: int = 0,
                    checkpointing: bool = True) -> dict:
    """Mémoire d'un fine-tuning (poids + gradients + états de l'optimiseur [+ activations]), en octets.

    ``method`` :

    - ``full`` : tous les paramètres s'entraînent, poids en ``weight_precision``
      (``fp16`` par défaut), gradients dans le même type, ``optimizer_bytes``
      par paramètre pour AdamW (8 = deux moments float32 ; le calcul du tutoriel
      d'origine prend 4, deux moments en fp16), plus ``master_bytes`` (4 pour
      une copie float32 en précision mixte) ;
    - ``lora`` : poids gelés en ``weight_precision`` (``bf16`` par défaut),
      adaptateurs de rang ``r`` sur ``target_modules`` en float32 ;
    - ``qlora`` : comme ``lora`` mais poids en NF4 (double quantification par
      défaut).

    Les activations ne sont comptées que si ``batch_size`` et ``seq_len`` sont
    donnés (voir :func:`activation_memory`).
    """
    from atelier.lora_nf4.lora import lora_parameter_count

    if method not in ("full", "lora", "qlora"):
        raise ValueError(f"method={method!r} inconnue : valeurs acceptées full, lora, qlora.")
    model = meta_model(config) if not isinstance(config, nn.Module) else config
    if method == "full":
        weight_precision = weight_precision or "fp16"
        check_precision(weight_precision, tuple(_FLOAT_BYTES))
        weights = weights_memory(model, weight_precision)
        n_train = weights["n_parameters"]
        gb = _FLOAT_BYTES[weight_precision] if grad_bytes is None else grad_bytes
        trainable_bytes = n_train * master_bytes
    else:
        weight_precision = weight_precision or ("nf4" if method == "qlora" else "bf16")
        weights = weights_memory(model, weight_precision, double_quant=double_quant)
        n_train = lora_parameter_count(model, r, target_modules)
        gb = 4 if grad_bytes is None else grad_bytes
        trainable_bytes = n_train * 4  # adaptateurs en float32
    out = {
        "method": method,
        "n_parameters": weights["n_parameters"],
        "n_trainable": n_train,
        "weights_bytes": weights["total_bytes"],
        "trainable_bytes": trainable_bytes,
        "gradients_bytes": n_train * gb,
        "optimizer_bytes": n_train * optimizer_bytes,
    }
    out["activations_bytes"] = activation_memory(model, batch_size, seq_len, checkpointing) if batch_size and seq_len else 0
    out["total_bytes"] = sum(v for k, v in out.items() if k.endswith("_bytes"))
    return out


# ----------------------------------------------------------------------------
# Mesure sur un vrai modèle chargé
# ----------------------------------------------------------------------------
def tensor_bytes(model: nn.Module) -> int:
    """Octets réellement occupés par les tenseurs d'un modèle chargé.

    Paramètres et tampons (une fois chacun), plus les états de quantification
    de bitsandbytes : absmax (et second niveau) en 4 bits, échelles SCB en 8 bits.
    """
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.device.type == "meta" or t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
        qs = getattr(t, "quant_state", None)
        if qs is not None:
            total += qs.absmax.numel() * qs.absmax.element_size()
            if getattr(qs, "state2", None) is not None:
                total += qs.state2.absmax.numel() * 4 + qs.state2.code.numel() * 4 + 4
        scb = getattr(t, "SCB", None)
        if scb is not None and scb.data_ptr() not in seen:
            seen.add(scb.data_ptr())
            total += scb.numel() * scb.element_size()
    for module in model.modules():  # int8 : après un premier passage, SCB passe dans module.state
        scb = getattr(getattr(module, "state", None), "SCB", None)
        if isinstance(scb, torch.Tensor) and scb.data_ptr() not in seen:
            seen.add(scb.data_ptr())
            total += scb.numel() * scb.element_size()
    return total


def _trim() -> None:
    gc.collect()
    try:  # rend au système la mémoire libérée (glibc)
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # pragma: no cover - autre libc
        pass


def measure_loaded(path, precision: str, other_dtype: str = "bf16", double_quant: bool = False, keep: bool = False):
    """Charge le modèle de ``path`` en ``precision`` et mesure ce qu'il occupe.

    Renvoie ``{"tensor_bytes", "rss_bytes", "peak_rss_bytes", "seconds"}`` (et
    ``"model"`` si ``keep``). ``tensor_bytes`` : octets des tenseurs juste après
    le chargement (:func:`tensor_bytes`). ``rss_bytes`` est la hausse de la mémoire résidente du processus
    après un passage avant sur quatre jetons (pour que les poids projetés en
    mémoire depuis le fichier soient vraiment lus), ramasse-miettes fait.
    """
    from transformers import AutoModelForCausalLM

    from atelier.runtime.measure import measure, rss_mb

    check_precision(precision)
    kwargs: dict = {"dtype": _TORCH_DTYPES.get(precision, _TORCH_DTYPES[other_dtype])}
    qc = quantization_config(precision, double_quant, device="cpu")
    if qc is not None:
        kwargs.update(quantization_config=qc, device_map="cpu")
    _trim()
    start = rss_mb()
    with measure() as m:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
        stored = tensor_bytes(model)
        model.eval()
        # Sans keep_4bit_trainable, bitsandbytes réorganiserait les couches NF4 pour son
        # noyau d'inférence CPU (absmax en bf16), format que l'on ne peut plus entraîner.
        with torch.no_grad(), keep_4bit_trainable(model):
            model(torch.tensor([[1, 2, 3, 4]]))
    _trim()
    out = {"tensor_bytes": stored, "rss_bytes": int((rss_mb() - start) * 2**20),
           "seconds": m.seconds, "peak_rss_bytes": int((m.peak_mb - start) * 2**20)}
    if keep:
        out["model"] = model
    else:
        del model
        _trim()
    return out
