"""Calculatrice de mémoire de l'affinage, à partir de la configuration d'un modèle.

Utilisé par le chapitre « LoRA et NF4 : adapter un modèle de chat français »
(``book/04_lora_nf4.md``). Le modèle est instancié sur le périphérique
``meta`` (formes exactes, aucune mémoire), puis chaque paramètre est compté
selon son rôle :

- les couches ``nn.Linear`` des blocs (pas la tête de sortie) sont celles que
  bitsandbytes quantifie en 8 bits (``int8``) ou en 4 bits (``nf4``) ;
- le reste (plongements, normalisations, tête de sortie) garde le type de
  chargement (``bf16`` par défaut).

:func:`weights_memory` donne la mémoire des poids chargés ; :func:`finetune_memory`
y ajoute gradients et états de l'optimiseur (AdamW) pour un affinage
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
from atelier.runtime.checks import check_int
from atelier.runtime.config import model_device

__all__ = [
    "PRECISIONS",
    "METHODS",
    "check_finetune_options",
    "meta_model",
    "weights_memory",
    "finetune_memory",
    "activation_memory",
    "tensor_bytes",
    "measure_loaded",
    "quantization_config",
    "MISTRAL_7B",
    "T4_BUDGET_BYTES",
    "recipe_estimate",
    "describe_estimate",
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
        try:
            return AutoConfig.for_model(config["model_type"], **kwargs)
        except Exception as exc:  # type inconnu, réglage refusé par transformers (message anglais, joint)
            raise ValueError(f"Configuration refusée pour model_type={config['model_type']!r} (un type de transformers, "
                             f"par exemple 'llama', et des réglages cohérents) ; détail : {str(exc)[:300]}") from exc
    if isinstance(config, (str, os.PathLike)):
        try:  # dossier local, ou identifiant du hub (profil full)
            return AutoConfig.from_pretrained(str(config))
        except (OSError, ValueError) as exc:
            raise ValueError(f"config : modèle introuvable (ni dossier local avec config.json, ni modèle du hub "
                             f"accessible) ; reçu {str(config)!r}. Acceptés : PretrainedConfig, dict avec "
                             f"'model_type', dossier d'un modèle.") from exc
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
    for name, v in (("batch_size", batch_size), ("seq_len", seq_len), ("bytes_per_value", bytes_per_value)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} doit être un entier strictement positif, reçu {v!r}.")
    sbh = seq_len * batch_size * cfg.hidden_size
    per_layer = 17 * sbh * bytes_per_value
    layers = cfg.num_hidden_layers
    kept = (layers * sbh * bytes_per_value + per_layer) if checkpointing else layers * per_layer
    return int(kept + seq_len * batch_size * cfg.vocab_size * 4)


METHODS = ("full", "lora", "qlora")


def check_finetune_options(method, grad_bytes=None, optimizer_bytes=8, master_bytes=0, batch_size=0, seq_len=0):
    """Vérifie les options de :func:`finetune_memory` : ``method`` parmi full, lora, qlora ; octets par
    paramètre entiers ≥ 0 (``grad_bytes`` peut valoir ``None``) ; ``batch_size`` et ``seq_len`` entiers ≥ 0,
    donnés ensemble (tous deux > 0) ou pas du tout (0)."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} inconnue : valeurs acceptées {', '.join(METHODS)}.")
    if grad_bytes is not None:
        check_int("grad_bytes", grad_bytes, min=0)
    check_int("optimizer_bytes", optimizer_bytes, min=0)
    check_int("master_bytes", master_bytes, min=0)
    batch_size, seq_len = check_int("batch_size", batch_size, min=0), check_int("seq_len", seq_len, min=0)
    if bool(batch_size) != bool(seq_len):
        raise ValueError(f"batch_size et seq_len vont ensemble (activations comptées) ou valent 0 tous deux ; "
                         f"reçu batch_size={batch_size}, seq_len={seq_len}.")


def finetune_memory(config, method: str = "qlora", r: int = 16, target_modules: Iterable[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
                    weight_precision: str | None = None, grad_bytes: int | None = None, optimizer_bytes: int = 8,
                    master_bytes: int = 0, double_quant: bool = True, batch_size: int = 0, seq_len: int = 0,
                    checkpointing: bool = True) -> dict:
    """Mémoire d'un affinage (poids + gradients + états de l'optimiseur [+ activations]), en octets.

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

    check_finetune_options(method, grad_bytes, optimizer_bytes, master_bytes, batch_size, seq_len)  # en français
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
    if not isinstance(model, nn.Module):
        raise TypeError(f"model doit être un torch.nn.Module chargé, reçu {type(model).__name__}.")
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
    check_precision(other_dtype, tuple(_FLOAT_BYTES))
    as_config(path)  # modèle introuvable : ValueError en français, avant tout chargement
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
            model(torch.tensor([[1, 2, 3, 4]], device=model_device(model)))
    _trim()
    out = {"tensor_bytes": stored, "rss_bytes": int((rss_mb() - start) * 2**20),
           "seconds": m.seconds, "peak_rss_bytes": int((m.peak_mb - start) * 2**20)}
    if keep:
        out["model"] = model
    else:
        del model
        _trim()
    return out


# ----------------------------------------------------------------------------
# La recette de la ligne de commande (python -m atelier.lora_nf4.sft --dry-estimate)
# ----------------------------------------------------------------------------
# Configuration publique de Mistral-7B-v0.1, l'architecture de Vigostral-7B-Chat (chapitre 04).
MISTRAL_7B = dict(model_type="mistral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False,
                  max_position_embeddings=32768, rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=4096)
T4_BUDGET_BYTES = 15 * 10**9  # les 16 Go d'un T4, moins 1 Go de marge (contexte CUDA, fragmentation)


def recipe_estimate(config=None, *, r: int = 16, target_modules: Iterable[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
                    batch_size: int = 4, seq_len: int = 512, gradient_checkpointing: bool = True,
                    four_bit: bool = True, double_quant: bool = True, precision: str = "fp16") -> dict:
    """Mémoire estimée d'un affinage LoRA ou QLoRA réglé comme ``python -m atelier.lora_nf4.sft`` (défaut : Mistral-7B).

    :func:`finetune_memory`, dont poids non quantifiés et activations sont recomptés dans ``precision``
    (``bf16``, ``fp16`` : 2 octets par valeur ; ``fp32`` : 4). Renvoie le même détail.
    """
    check_precision(precision, tuple(_FLOAT_BYTES))
    model = meta_model(MISTRAL_7B if config is None else config)
    weight_precision = "nf4" if four_bit else precision
    out = finetune_memory(model, "qlora" if four_bit else "lora", r=r, target_modules=tuple(target_modules),
                          weight_precision=weight_precision, double_quant=double_quant, batch_size=batch_size,
                          seq_len=seq_len, checkpointing=gradient_checkpointing)
    out["weights_bytes"] = weights_memory(model, weight_precision, precision, double_quant)["total_bytes"]
    if batch_size and seq_len:
        out["activations_bytes"] = activation_memory(model, batch_size, seq_len, gradient_checkpointing,
                                                     _FLOAT_BYTES[precision])
    out["total_bytes"] = sum(v for k, v in out.items() if k.endswith("_bytes") and k != "total_bytes")
    return out


def describe_estimate(estimate: dict, budget_bytes: int = T4_BUDGET_BYTES) -> str:
    """L'estimation de :func:`recipe_estimate` en une phrase française, comparée à ``budget_bytes`` (défaut : un T4)."""
    from atelier.runtime.fmt import nombre

    if not isinstance(estimate, dict) or not {"weights_bytes", "activations_bytes", "total_bytes"} <= set(estimate):
        raise TypeError("estimate doit être le dictionnaire de recipe_estimate() ou de finetune_memory().")
    budget_bytes = check_int("budget_bytes", budget_bytes, min=1)

    def go(n: int) -> str:
        return f"{nombre(n / 1e9, 1)}\u00a0Go"

    verdict = "tient dans" if estimate["total_bytes"] <= budget_bytes else "dépasse"
    return (f"Estimation : poids {go(estimate['weights_bytes'])}, activations {go(estimate['activations_bytes'])}, "
            f"total {go(estimate['total_bytes'])} ; {verdict} le budget de {go(budget_bytes)}.")
