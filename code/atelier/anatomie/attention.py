"""L'attention refaite à la main : produit scalaire normalisé, masque causal, RoPE.

Utilisé par le chapitre « Anatomie d'un LLM » (``book/01_anatomie.md``), qui
recalcule les poids d'attention d'une couche à partir des propres projections
du modèle et vérifie qu'ils sont égaux à ceux que le modèle renvoie
(``output_attentions=True``, attention « eager »).

Architectures prises en charge par :func:`attention_weights_from_model` :

* ``gpt2`` (GPT-2, distilgpt2) : projection ``c_attn`` unique, pas de RoPE ;
* ``gemma3_text`` (Gemma 3) : attention groupée (GQA), normalisation RMS de
  Q et K (« QK-norm »), RoPE à deux bases (couches locales et globales),
  fenêtre glissante sur les couches ``sliding_attention`` ;
* ``llama`` (SmolLM2…) : GQA et RoPE.

Notations des formes : ``B`` lot, ``H`` têtes, ``T`` positions, ``D`` dimension
d'une tête, ``C`` dimension du modèle.
"""

from __future__ import annotations

import math

import torch

from atelier.runtime.checks import check_float, check_int

SUPPORTED_MODEL_TYPES = ("gpt2", "gemma3_text", "llama")


def _shape(t) -> tuple:
    return tuple(t.shape)


def check_attention_inputs(q, k, v, scale=None, mask=None):
    """Vérifie ``q``, ``k``, ``v`` (tenseurs flottants ``(..., T, D)`` de même type, formes compatibles)
    et ``mask`` ; renvoie l'échelle (``1/√D`` par défaut).

    Seuls les types et les formes sont vérifiés (pas les valeurs) : la vérification ne coûte rien.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} doit être un torch.Tensor, reçu {type(t).__name__}.")
        if not t.is_floating_point():
            raise TypeError(f"{name} doit être un tenseur flottant (float32, bfloat16…), reçu le type {t.dtype}.")
        if t.dim() < 2:
            raise ValueError(f"{name} doit avoir au moins 2 dimensions (..., T, D), reçu la forme {_shape(t)}.")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k et v doivent avoir le même type, reçu {q.dtype}, {k.dtype} et {v.dtype}.")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q et k doivent avoir la même dimension de tête (dernier axe) : {q.shape[-1]} ≠ {k.shape[-1]}."
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k et v doivent avoir le même nombre de positions : {k.shape[-2]} ≠ {v.shape[-2]}.")
    try:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])  # (lot, têtes…)
    except RuntimeError:
        raise ValueError(
            f"Les axes de tête (lot, têtes…) de q, k et v sont incompatibles : {_shape(q)}, {_shape(k)} et "
            f"{_shape(v)} (chaque axe doit être égal ou valoir 1 ; en attention groupée, répétez k et v avec repeat_kv)."
        ) from None
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask doit être None ou un torch.Tensor, reçu {type(mask).__name__}.")
        if mask.dtype != torch.bool and not mask.is_floating_point():
            raise TypeError(f"mask doit être booléen ou flottant, reçu le type {mask.dtype}.")
        scores = (*batch, q.shape[-2], k.shape[-2])
        try:
            ok = torch.broadcast_shapes(mask.shape, scores) == scores
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"mask de forme {_shape(mask)} ne se diffuse pas vers les scores (..., T_q, T_k) = {scores}.")
    if scale is None:
        return 1.0 / math.sqrt(q.shape[-1])
    return check_float("scale", scale, min=0, min_open=True)


def scaled_dot_product_attention(q, k, v, mask=None, *, scale=None):
    """Attention par produit scalaire normalisé : ``softmax(q·kᵀ·scale + masque)·v``.

    Paramètres
    ----------
    q : tenseur ``(..., T_q, D)`` ; k : ``(..., T_k, D)`` ; v : ``(..., T_k, D_v)``.
    mask : ``None``, un tenseur booléen (``True`` = position autorisée, comme
        :func:`torch.nn.functional.scaled_dot_product_attention`) ou un tenseur
        flottant ajouté aux scores (0 ou ``-inf``), diffusable vers ``(..., T_q, T_k)``.
    scale : facteur des scores ; par défaut ``1/√D``.

    Renvoie ``(sortie, poids)`` : sortie ``(..., T_q, D_v)``, poids ``(..., T_q, T_k)``
    (chaque ligne somme à 1). Le softmax est calculé au moins en float32,
    comme dans transformers. Une ligne entièrement masquée donne des ``nan``.
    """
    scale = check_attention_inputs(q, k, v, scale, mask)  # types et formes ; 1/√D par défaut
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (..., T_q, T_k)
    if mask is not None and mask.dtype == torch.bool:  # True = position autorisée
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None:  # masque additif : 0 ou -inf
        scores = scores + mask
    # Softmax au moins en float32 (comme transformers), puis retour au type de q.
    softmax_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    weights = torch.softmax(scores, dim=-1, dtype=softmax_dtype).to(q.dtype)  # (..., T_q, T_k)
    output = torch.matmul(weights, v)  # (..., T_q, D_v)
    return output, weights


def causal_mask(length, *, sliding_window=None, device=None):
    """Masque booléen ``(T, T)`` : la position ``i`` voit ``j`` si ``j ≤ i``
    (et ``i - j < sliding_window`` quand une fenêtre glissante est donnée)."""
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(f"length doit être un entier ≥ 1, reçu {length!r}.")
    if sliding_window is not None and (not isinstance(sliding_window, int) or sliding_window < 1):
        raise ValueError(f"sliding_window doit être None ou un entier ≥ 1, reçu {sliding_window!r}.")
    i = torch.arange(length, device=device)[:, None]  # requêtes
    j = torch.arange(length, device=device)[None, :]  # clés
    mask = j <= i
    if sliding_window is not None:
        mask &= (i - j) < sliding_window
    return mask


def check_repeat_kv(x, n_rep) -> None:
    """Vérifie ``x`` (tenseur ``(B, H_kv, T, D)``) et ``n_rep`` (entier ≥ 1) pour :func:`repeat_kv`."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        got = f"un tenseur de forme {_shape(x)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"x doit être un torch.Tensor de forme (B, H_kv, T, D) ; reçu {got}.")
    check_int("n_rep", n_rep, min=1)


def repeat_kv(x, n_rep):
    """Attention groupée (GQA) : répète chaque tête K/V ``n_rep`` fois, ``(B, H_kv, T, D) → (B, H_kv·n_rep, T, D)``."""
    check_repeat_kv(x, n_rep)  # x de forme (B, H_kv, T, D), n_rep entier ≥ 1 (0 rendrait un tenseur vide)
    if n_rep == 1:
        return x
    return torch.repeat_interleave(x, n_rep, dim=1)


def check_rotary_params(length, head_dim, theta) -> None:
    """Vérifie les réglages de RoPE : ``length`` entier ≥ 1, ``head_dim`` entier pair ≥ 2, ``theta`` réel fini > 0."""
    check_int("length", length, min=1)
    if check_int("head_dim", head_dim, min=2) % 2:
        raise ValueError(f"RoPE exige une dimension de tête paire (head_dim) ; reçu {head_dim}.")
    check_float("theta", theta, min=0, min_open=True)


def rotary_cos_sin(length, head_dim, theta, *, dtype=torch.float32, device=None):
    """Cosinus et sinus de RoPE pour les positions ``0…T-1`` : deux tenseurs ``(T, D)``, sur ``device``.

    La paire de dimensions ``(d, d + D/2)`` tourne à la fréquence ``θ^(-2d/D)``.
    """
    check_rotary_params(length, head_dim, theta)  # T ≥ 1, D pair ≥ 2, θ > 0 (sinon un message en français)
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))  # (D/2,)
    angles = torch.arange(length, dtype=torch.float32, device=device)[:, None] * inv_freq[None, :]  # (T, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, D)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x, cos, sin):
    """Applique RoPE à ``x`` ``(B, H, T, D)`` : rotation de chaque paire ``(x_d, x_{d+D/2})``."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)  # (B, H, T, D)
    return x * cos + rotated * sin


def _rms_norm_gemma(x, weight, eps):
    """Normalisation RMS de Gemma : ``x / rms(x) · (1 + w)``, calculée en float32."""
    x32 = x.float()
    out = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return (out * (1.0 + weight.float())).type_as(x)


def _decoder_layers(model):
    """Liste des blocs du décodeur et type d'architecture."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"Architecture {model_type!r} non prise en charge : acceptées {', '.join(SUPPORTED_MODEL_TYPES)}."
        )
    if model_type == "gpt2":
        return model.transformer.h, model_type
    return model.model.layers, model_type


def _attention_input(model, input_ids, layer):
    """Capture l'entrée du bloc d'attention de la couche ``layer`` (après sa normalisation)."""
    layers, model_type = _decoder_layers(model)
    module = layers[layer].attn if model_type == "gpt2" else layers[layer].self_attn
    captured = {}

    def hook(_module, args, kwargs):
        captured["x"] = args[0] if args else kwargs["hidden_states"]

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            model(input_ids=input_ids, use_cache=False)
    finally:
        handle.remove()
    return captured["x"], module


def layer_queries_keys(model, input_ids, layer):
    """Requêtes et clés de la couche ``layer``, avant RoPE, et la façon de les combiner.

    On lit seulement l'entrée du bloc d'attention (déjà normalisée) ; projections
    Q/K, découpage en têtes et QK-norm (Gemma 3) sont refaits ici.

    ``input_ids`` : tenseur ``(B, T)`` sans remplissage. Renvoie ``(q, k, réglages)`` :
    ``q`` ``(B, H, T, D)``, ``k`` ``(B, H_kv, T, D)`` et les arguments nommés
    ``scale``, ``rope_theta`` et ``sliding_window`` de :func:`attention_weights`.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError("input_ids doit être un tenseur d'entiers de forme (B, T), sans remplissage.")
    if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids doit contenir des entiers (identifiants de jetons), reçu le type {input_ids.dtype}.")
    layers, model_type = _decoder_layers(model)
    n_layers = len(layers)
    if isinstance(layer, bool) or not isinstance(layer, int) or not -n_layers <= layer < n_layers:
        raise ValueError(f"layer doit être un entier entre 0 et {n_layers - 1}, reçu {layer!r}.")
    layer = layer % n_layers
    x, attn = _attention_input(model, input_ids, layer)  # x : (B, T, C)
    cfg = model.config
    B, T, C = x.shape

    with torch.no_grad():
        if model_type == "gpt2":
            H = cfg.n_head
            D = C // H
            q, k, _ = attn.c_attn(x).split(C, dim=2)  # 3 × (B, T, C)
            q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
            k = k.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
            return q, k, {"scale": attn.scaling, "rope_theta": None, "sliding_window": None}
        H, H_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        D = getattr(cfg, "head_dim", None) or C // H
        q = attn.q_proj(x).view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = attn.k_proj(x).view(B, T, H_kv, D).transpose(1, 2)  # (B, H_kv, T, D)
        layer_type = cfg.layer_types[layer] if getattr(cfg, "layer_types", None) else "full_attention"
        if model_type == "gemma3_text":
            q = _rms_norm_gemma(q, attn.q_norm.weight, attn.q_norm.eps)  # QK-norm
            k = _rms_norm_gemma(k, attn.k_norm.weight, attn.k_norm.eps)
            rope = cfg.rope_parameters[layer_type]
            scale = cfg.query_pre_attn_scalar ** -0.5
        else:
            rope = cfg.rope_parameters
            scale = D ** -0.5
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"Seul le RoPE « default » est refait ici, reçu {rope.get('rope_type')!r}.")
    window = cfg.sliding_window if layer_type == "sliding_attention" else None
    return q, k, {"scale": scale, "rope_theta": rope["rope_theta"], "sliding_window": window}


def attention_weights(q, k, *, scale, rope_theta=None, sliding_window=None):
    """Poids d'attention causale ``(B, H, T, T)`` à partir des requêtes et des clés, avant RoPE.

    ``q`` : ``(B, H, T, D)`` ; ``k`` : ``(B, H_kv, T, D)``, avec ``H`` multiple de ``H_kv`` (GQA).
    """
    T, D = q.shape[-2], q.shape[-1]
    with torch.no_grad():
        if rope_theta is not None:  # la position est encodée en tournant q et k
            cos, sin = rotary_cos_sin(T, D, rope_theta, dtype=q.dtype, device=q.device)  # (T, D)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        k = repeat_kv(k, q.shape[1] // k.shape[1])  # (B, H, T, D) : chaque tête K sert H/H_kv têtes Q
        mask = causal_mask(T, sliding_window=sliding_window, device=q.device)  # (T, T)
        # Les valeurs ne changent pas les poids : on passe k comme v.
        _, weights = scaled_dot_product_attention(q, k, k, mask, scale=scale)
    return weights  # (B, H, T, T)


def attention_weights_from_model(model, input_ids, layer):
    """Recalcule les poids d'attention de la couche ``layer`` avec les projections du modèle.

    On lit seulement l'entrée du bloc d'attention (déjà normalisée) ; tout le
    reste (projections Q/K/V, découpage en têtes, QK-norm, RoPE, GQA, masque
    causal ou à fenêtre glissante, softmax) est refait ici.

    ``input_ids`` : tenseur ``(B, T)`` sans remplissage. Renvoie ``(B, H, T, T)``.
    """
    q, k, how = layer_queries_keys(model, input_ids, layer)
    return attention_weights(q, k, **how)


def attention_entropy(weights):
    """Entropie (en nats) de chaque ligne d'attention, moyennée sur les requêtes.

    ``weights`` : ``(..., T_q, T_k)`` → ``(...)``. Faible = attention concentrée
    sur peu de positions ; ``log(t)`` = attention uniforme sur ``t`` positions.
    """
    if not isinstance(weights, torch.Tensor) or weights.dim() < 2:
        raise ValueError("weights doit être un tenseur (..., T_q, T_k).")
    w = weights.float()
    ent = -(w * torch.log(w.clamp_min(1e-30))).sum(-1)  # (..., T_q)
    return ent.mean(-1)
