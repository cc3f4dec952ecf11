"""Attention désentrelacée de DeBERTa-v2, refaite à la main.

Utilisé par le chapitre « CamemBERT ou CamemBERTa ? L'attention
désentrelacée » (``book/03_camembert.md``).

Le score d'attention entre la requête ``i`` et la clé ``j`` est la somme de
trois termes (He et al., 2021), tous divisés par ``sqrt(3 d)`` quand les deux
termes de position sont actifs :

* contenu → contenu  ``c2c[i, j] = q_i · k_j``
* contenu → position ``c2p[i, j] = q_i · k^r[δ(i, j)]``
* position → contenu ``p2c[i, j] = k_j · q^r[δ(i, j)]``

où ``q^r = W_q^r P`` et ``k^r = W_k^r P`` projettent la table ``P`` des
plongements de *distances relatives*, et ``δ(i, j) = i − j`` est bornée
(``±k``) et, au-delà d'une distance, regroupée en « seaux » logarithmiques
(:func:`log_bucket_position`). Avec ``share_att_key`` (CamemBERTa, DeBERTa-v3),
``W^r_q = W_q`` et ``W^r_k = W_k`` : les projections de contenu servent aussi aux
positions.

:class:`DisentangledSelfAttention` calcule ces termes elle-même à partir des
projections (``nn.Linear``) d'un module ``transformers`` existant ; les tests
(``tests/test_deberta.py``) vérifient l'égalité avec
``transformers.models.deberta_v2.modeling_deberta_v2.DisentangledSelfAttention``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

POS_ATT_TYPES = ("c2p", "p2c")


def _check_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} doit être un entier, reçu {type(value).__name__} ({value!r}).")
    return value


def log_bucket_position(relative_pos, bucket_size: int, max_position: int) -> torch.Tensor:
    """Regroupe les distances relatives en seaux logarithmiques (DeBERTa-v2).

    Les distances ``|δ| < bucket_size // 2`` (``mid``) sont gardées telles
    quelles ; au-delà, ``|δ|`` devient
    ``mid + ceil(log(|δ| / mid) / log((max_position − 1) / mid) · (mid − 1))``,
    avec le signe de ``δ``. Exemple (256 seaux, position max 512) :
    150 → 143, 256 → 192, 511 → 255.

    ``relative_pos`` : tenseur d'entiers (ou liste d'entiers) de forme
    quelconque. Renvoie un tenseur flottant de même forme, aux mêmes valeurs que
    ``make_log_bucket_position`` de ``transformers``.
    """
    bucket_size = _check_int("bucket_size", bucket_size)
    max_position = _check_int("max_position", max_position)
    if bucket_size < 4:
        raise ValueError(f"bucket_size doit valoir au moins 4 (reçu {bucket_size}).")
    mid = bucket_size // 2
    if max_position <= mid + 1:
        raise ValueError(
            f"max_position ({max_position}) doit dépasser bucket_size // 2 + 1 = {mid + 1} : "
            "sinon il n'y a rien à regrouper."
        )
    if not torch.is_tensor(relative_pos):
        relative_pos = torch.as_tensor(relative_pos)
    if relative_pos.dtype.is_floating_point or relative_pos.dtype == torch.bool or relative_pos.is_complex():
        raise TypeError(f"relative_pos doit contenir des entiers, reçu le type {relative_pos.dtype}.")
    rel = relative_pos.long()
    sign = torch.sign(rel)
    # Distances proches : remplacées par mid - 1 pour que le log reste défini
    # (elles ne seront pas utilisées, voir le torch.where final).
    abs_pos = torch.where(rel.abs() < mid, torch.full_like(rel, mid - 1), rel.abs())
    log_pos = torch.ceil(
        torch.log(abs_pos / mid) / torch.log(torch.tensor((max_position - 1) / mid)) * (mid - 1)
    ) + mid
    return torch.where(abs_pos <= mid, rel.to(log_pos.dtype), log_pos * sign)


def relative_positions(query_size: int, key_size: int, bucket_size: int = -1, max_position: int = -1) -> torch.Tensor:
    """Matrice ``δ(i, j) = i − j`` (en seaux si ``bucket_size > 0``), forme (1, Tq, Tk), entiers longs."""
    query_size = _check_int("query_size", query_size)
    key_size = _check_int("key_size", key_size)
    if query_size < 1 or key_size < 1:
        raise ValueError(f"Les longueurs doivent être ≥ 1, reçu query_size={query_size}, key_size={key_size}.")
    bucket_size, max_position = _check_int("bucket_size", bucket_size), _check_int("max_position", max_position)
    rel = torch.arange(query_size)[:, None] - torch.arange(key_size)[None, :]  # (Tq, Tk)
    if bucket_size > 0 and max_position > 0:
        rel = log_bucket_position(rel, bucket_size, max_position)
    return rel.long().unsqueeze(0)  # (1, Tq, Tk)


def check_position_term(x, pos, idx, x_name: str, pos_name: str) -> None:
    """Vérifie les entrées d'un terme de position : ``x`` (B, H, T, d) flottant, ``pos`` (H ou 1, 2k, d) de même
    type et même ``d``, ``idx`` (T, T') d'entiers dans [0, 2k − 1] (une ligne par position de ``x``)."""
    for name, value in ((x_name, x), (pos_name, pos), ("idx", idx)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} doit être un torch.Tensor, reçu {type(value).__name__}.")
    if x.dim() != 4 or pos.dim() != 3 or idx.dim() != 2:
        raise ValueError(f"Formes attendues : {x_name} (B, H, T, d), {pos_name} (H, 2k, d), idx (Tq, Tk) ; reçu "
                         f"{tuple(x.shape)}, {tuple(pos.shape)} et {tuple(idx.shape)}.")
    if not x.is_floating_point() or x.dtype != pos.dtype:
        raise TypeError(f"{x_name} et {pos_name} doivent être flottants et de même type, reçu {x.dtype} et {pos.dtype}.")
    if x.shape[-1] != pos.shape[-1] or pos.shape[0] not in (1, x.shape[1]):
        raise ValueError(f"{pos_name} {tuple(pos.shape)} ne correspond pas à {x_name} {tuple(x.shape)} : même dimension "
                         f"de tête d (dernier axe) et H = {x.shape[1]} (ou 1) tables attendues.")
    if idx.is_floating_point() or idx.dtype == torch.bool:
        raise TypeError(f"idx doit contenir des indices entiers, reçu le type {idx.dtype}.")
    if idx.shape[0] != x.shape[-2]:
        raise ValueError(f"idx {tuple(idx.shape)} doit avoir une ligne par position de {x_name} ({x.shape[-2]}).")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= pos.shape[1]):
        raise ValueError(f"idx doit rester dans [0, {pos.shape[1] - 1}] (lignes de {pos_name}) ; reçu de "
                         f"{int(idx.min())} à {int(idx.max())}.")


def c2p_term(q: torch.Tensor, pos_key: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Contenu → position : ``c2p[i, j] = q_i · k^r[idx[i, j]]``, forme (B, H, Tq, Tk), sans division.

    ``q`` (B, H, Tq, d) : requêtes de contenu ; ``pos_key`` (H, 2k, d) : clés de
    position, une par ligne de la table ; ``idx`` (Tq, Tk) : ligne de la table
    à lire pour la paire (i, j), c'est-à-dire ``δ(i, j) + k``.
    """
    check_position_term(q, pos_key, idx, "q", "pos_key")  # formes et indices compatibles, en français
    all_pos = q @ pos_key.transpose(-1, -2)  # (B, H, Tq, 2k) : q_i · k^r_r pour toutes les distances r
    return torch.gather(all_pos, -1, idx.expand(*all_pos.shape[:2], *idx.shape))  # (B, H, Tq, Tk)


def p2c_term(k: torch.Tensor, pos_query: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Position → contenu : ``p2c[i, j] = k_j · q^r[idx[i, j]]``, forme (B, H, Tq, Tk), sans division.

    ``k`` (B, H, Tk, d) : clés de contenu ; ``pos_query`` (H, 2k, d) : requêtes
    de position ; ``idx`` (Tq, Tk) comme pour :func:`c2p_term`.
    """
    check_position_term(k, pos_query, idx.transpose(0, 1), "k", "pos_query")  # idx vu depuis les clés
    all_pos = k @ pos_query.transpose(-1, -2)  # (B, H, Tk, 2k) : k_j · q^r_r
    # La ligne j se lit à l'indice idx[i, j] : on rassemble sur la table transposée (Tk, Tq).
    p2c = torch.gather(all_pos, -1, idx.transpose(0, 1).expand(*all_pos.shape[:2], idx.size(1), idx.size(0)))
    return p2c.transpose(-1, -2)  # (B, H, Tq, Tk)


class DisentangledSelfAttention(nn.Module):
    """Auto-attention désentrelacée (c2c + c2p + p2c), écrite terme à terme.

    Les projections sont des ``nn.Linear`` passés au constructeur (réutilisés,
    pas recopiés : un adaptateur LoRA posé sur ``query_proj`` agit donc aussi
    sur les termes de position quand ``share_att_key`` est vrai). On construit
    d'ordinaire le module avec :meth:`from_hf`.

    Appel : ``m(hidden_states, attention_mask, relative_pos=..., rel_embeddings=...)``
    avec les arguments que l'encodeur ``transformers`` passe à son attention ;
    renvoie ``(contexte, None)`` ou ``(contexte, probabilités)`` si
    ``output_attentions=True``, comme ``transformers``.
    """

    def __init__(
        self,
        query_proj: nn.Linear,
        key_proj: nn.Linear,
        value_proj: nn.Linear,
        num_heads: int,
        *,
        pos_att_type=("c2p", "p2c"),
        relative_attention: bool = True,
        share_att_key: bool = False,
        pos_key_proj: nn.Linear | None = None,
        pos_query_proj: nn.Linear | None = None,
        position_buckets: int = -1,
        max_relative_positions: int = 512,
        attention_dropout: float = 0.0,
        pos_dropout: float = 0.0,
    ):
        super().__init__()
        for name, lin in (("query_proj", query_proj), ("key_proj", key_proj), ("value_proj", value_proj)):
            if not isinstance(lin, nn.Module):
                raise TypeError(f"{name} doit être un module nn.Linear, reçu {type(lin).__name__}.")
        num_heads = _check_int("num_heads", num_heads)
        if num_heads < 1:
            raise ValueError(f"num_heads doit être ≥ 1, reçu {num_heads}.")
        pos_att_type = list(pos_att_type or [])
        unknown = [t for t in pos_att_type if t not in POS_ATT_TYPES]
        if unknown:
            raise ValueError(f"pos_att_type inconnu(s) {unknown} : valeurs acceptées {list(POS_ATT_TYPES)}.")
        self.query_proj, self.key_proj, self.value_proj = query_proj, key_proj, value_proj
        self.num_heads = num_heads
        self.pos_att_type = pos_att_type
        self.relative_attention = bool(relative_attention)
        self.share_att_key = bool(share_att_key)
        self.position_buckets = position_buckets
        self.max_relative_positions = max_relative_positions
        # Nombre de distances de chaque côté de 0 dans la table P (« k » de l'article).
        self.att_span = position_buckets if position_buckets > 0 else max_relative_positions
        if self.relative_attention and not self.share_att_key:
            if "c2p" in pos_att_type and pos_key_proj is None:
                raise ValueError("c2p sans share_att_key demande pos_key_proj (projection des clés de position).")
            if "p2c" in pos_att_type and pos_query_proj is None:
                raise ValueError("p2c sans share_att_key demande pos_query_proj (projection des requêtes de position).")
        self.pos_key_proj = pos_key_proj
        self.pos_query_proj = pos_query_proj
        self.dropout = nn.Dropout(attention_dropout)
        self.pos_dropout = nn.Dropout(pos_dropout)

    @classmethod
    def from_hf(cls, module: nn.Module) -> DisentangledSelfAttention:
        """Construit le module à partir d'un ``DisentangledSelfAttention`` de ``transformers``.

        Les couches ``nn.Linear`` sont réutilisées telles quelles ; seuls les
        calculs (c2c, c2p, p2c, masque, softmax) sont refaits ici.
        """
        needed = ("query_proj", "key_proj", "value_proj", "num_attention_heads", "pos_att_type")
        missing = [a for a in needed if not hasattr(module, a)]
        if missing:
            raise TypeError(
                f"from_hf attend un DisentangledSelfAttention de transformers (DeBERTa-v2) ; "
                f"{type(module).__name__} n'a pas {missing}."
            )
        rel = bool(getattr(module, "relative_attention", False))
        return cls(
            module.query_proj,
            module.key_proj,
            module.value_proj,
            module.num_attention_heads,
            pos_att_type=module.pos_att_type,
            relative_attention=rel,
            share_att_key=getattr(module, "share_att_key", False),
            pos_key_proj=getattr(module, "pos_key_proj", None),
            pos_query_proj=getattr(module, "pos_query_proj", None),
            position_buckets=getattr(module, "position_buckets", -1) if rel else -1,
            max_relative_positions=getattr(module, "max_relative_positions", -1) if rel else -1,
            attention_dropout=module.dropout.p,
            pos_dropout=module.pos_dropout.p if rel else 0.0,
        )

    # ------------------------------------------------------------------ outils
    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H·d) → (B, H, T, d)."""
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, -1).transpose(1, 2)

    def score_components(
        self,
        hidden_states: torch.Tensor,
        relative_pos: torch.Tensor | None = None,
        rel_embeddings: torch.Tensor | None = None,
        query_states: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Les termes du score, déjà divisés par ``sqrt(n · d)`` : dict ``c2c``, ``c2p``, ``p2c`` → (B, H, Tq, Tk).

        Un terme désactivé par ``pos_att_type`` est absent du dictionnaire.
        """
        if not torch.is_tensor(hidden_states) or hidden_states.dim() != 3:
            raise ValueError("hidden_states doit être un tenseur (B, T, C).")
        if query_states is None:
            query_states = hidden_states
        q = self._heads(self.query_proj(query_states))  # (B, H, Tq, d)
        k = self._heads(self.key_proj(hidden_states))  # (B, H, Tk, d)
        d = q.size(-1)
        n_terms = 1 + sum(t in self.pos_att_type for t in POS_ATT_TYPES)  # 1, 2 ou 3
        scale = math.sqrt(d * n_terms)  # sqrt(3d) avec les deux termes de position
        out = {"c2c": q @ k.transpose(-1, -2) / scale}  # (B, H, Tq, Tk)
        if not self.relative_attention or not any(t in self.pos_att_type for t in POS_ATT_TYPES):
            return out
        if rel_embeddings is None:
            raise ValueError("rel_embeddings est requis avec l'attention relative (encoder.get_rel_embedding()).")
        tq, tk = q.size(-2), k.size(-2)
        if relative_pos is None:
            relative_pos = relative_positions(tq, tk, self.position_buckets, self.max_relative_positions)
        rel = relative_pos.to(q.device).long()
        while rel.dim() > 2:  # (1, Tq, Tk) ou (1, 1, Tq, Tk) → (Tq, Tk)
            if rel.size(0) != 1:
                raise ValueError(f"relative_pos doit être commun au lot (première dimension 1), forme {tuple(relative_pos.shape)}.")
            rel = rel[0]
        span = self.att_span
        # Table des 2k distances, projetée par les mêmes couches que le contenu si share_att_key.
        pos = self.pos_dropout(rel_embeddings[: 2 * span]).unsqueeze(0)  # (1, 2k, C)
        # Indice dans la table : δ(i, j) + k, borné à [0, 2k − 1].
        idx = torch.clamp(rel + span, 0, 2 * span - 1)  # (Tq, Tk)
        if "c2p" in self.pos_att_type:
            pk = self._heads((self.key_proj if self.share_att_key else self.pos_key_proj)(pos))[0]  # (H, 2k, d)
            out["c2p"] = c2p_term(q, pk, idx) / scale  # (B, H, Tq, Tk)
        if "p2c" in self.pos_att_type:
            pq = self._heads((self.query_proj if self.share_att_key else self.pos_query_proj)(pos))[0]  # (H, 2k, d)
            out["p2c"] = p2c_term(k, pq, idx) / scale  # (B, H, Tq, Tk)
        return out

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor,
        output_attentions: bool = False,
        query_states: torch.Tensor | None = None,
        relative_pos: torch.Tensor | None = None,
        rel_embeddings: torch.Tensor | None = None,
    ):
        """Contexte (B, T, H·d) ; ``attention_mask`` de forme (B, 1, Tq, Tk) (ou (B, T) : il est alors étendu)."""
        if not torch.is_tensor(attention_mask):
            raise TypeError("attention_mask doit être un tenseur (0/1 ou booléen).")
        if attention_mask.dim() <= 2:  # (B, T) → (B, 1, T, T) : i et j doivent être deux vrais jetons
            m = attention_mask[:, None, None, :]
            attention_mask = m * m.squeeze(-2).unsqueeze(-1)
        elif attention_mask.dim() == 3:
            attention_mask = attention_mask.unsqueeze(1)
        terms = self.score_components(hidden_states, relative_pos, rel_embeddings, query_states)
        scores = sum(terms.values())  # (B, H, Tq, Tk)
        scores = scores.masked_fill(~attention_mask.bool(), torch.finfo(scores.dtype).min)
        probs = self.dropout(torch.softmax(scores, dim=-1))  # (B, H, Tq, Tk)
        v = self._heads(self.value_proj(hidden_states))  # (B, H, Tk, d)
        context = (probs @ v).transpose(1, 2).reshape(hidden_states.size(0), -1, v.size(1) * v.size(-1))  # (B, Tq, H·d)
        return (context, probs if output_attentions else None)
