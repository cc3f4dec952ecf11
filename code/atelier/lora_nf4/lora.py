"""LoRA refait à la main : une couche linéaire gelée + une mise à jour de rang r.

Utilisé par le chapitre « LoRA et NF4 : adapter un modèle de chat français »
(``book/04_lora_nf4.md``). ``tests/test_lora.py`` vérifie que
:class:`LoRALinear` donne la même sortie que la couche LoRA de ``peft`` avec
les mêmes matrices A et B, avant et après fusion (``merge``/``unmerge``).

Sortie d'une couche adaptée : ``y = base(x) + (alpha / r) · x Aᵀ Bᵀ`` avec
A de forme (r, in_features) et B de forme (out_features, r). Seuls A et B
s'entraînent ; B part de zéro, si bien qu'au départ le modèle est inchangé.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from atelier.adapters import check_rank_alpha  # noqa: F401 (réexporté)
from atelier.parameters import parameter_counts  # (entraînables, total), poids NF4 comptés en entier

__all__ = ["LoRALinear", "apply_lora", "check_lora_layer", "check_rank_alpha", "lora_parameter_count", "parameter_counts",
           "targeted_layers"]


def check_lora_layer(base, r, alpha, dropout) -> tuple[int, float, float]:
    """Vérifie une couche à adapter et ses réglages : ``base`` est une ``nn.Linear``, ``r`` un entier entre 1 et
    ``min(in_features, out_features)`` (au-delà, ΔW = B·A ne gagne aucun rang et l'on paie des paramètres
    inutiles), ``alpha > 0`` et ``dropout`` dans [0, 1[ ; renvoie ``(r, alpha, dropout)``."""
    if not isinstance(base, nn.Linear):
        raise TypeError(f"base doit être une couche torch.nn.Linear, reçu {type(base).__name__}.")
    r, alpha, dropout = check_rank_alpha(r, alpha, dropout)
    _check_rank_fits(r, [("base", base)])
    return r, alpha, dropout


def _check_rank_fits(r: int, layers) -> None:
    for name, layer in layers:
        limit = min(layer.in_features, layer.out_features)
        if r > limit:
            raise ValueError(f"r (le rang) doit être un entier entre 1 et min(in_features, out_features) = {limit} "
                             f"pour la couche {name} ({layer.in_features} → {layer.out_features}) ; reçu {r}.")


class LoRALinear(nn.Module):
    """Couche ``nn.Linear`` gelée plus une mise à jour de rang ``r``.

    Paramètres entraînables : ``A`` (r × in_features), initialisée comme dans
    peft (Kaiming uniforme), et ``B`` (out_features × r), initialisée à zéro.
    Facteur d'échelle ``alpha / r``. La couche de base (poids **et** biais) est
    gelée.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        r, alpha, dropout = check_lora_layer(base, r, alpha, dropout)  # nn.Linear, 1 ≤ r ≤ min(in, out)…
        self.base = base
        self.r = r
        self.alpha = alpha
        self.scaling = alpha / r
        for p in self.base.parameters():
            p.requires_grad_(False)
        dtype = base.weight.dtype if base.weight.is_floating_point() else torch.float32
        self.A = nn.Parameter(torch.empty(r, base.in_features, dtype=dtype, device=base.weight.device))
        self.B = nn.Parameter(torch.zeros(base.out_features, r, dtype=dtype, device=base.weight.device))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # même initialisation que peft
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """La mise à jour ΔW = (alpha / r) · B A, de forme (out_features, in_features)."""
        return self.scaling * (self.B @ self.A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (…, out)
        if self.merged:
            return y  # ΔW est déjà dans base.weight
        return y + self.scaling * (self.dropout(x) @ self.A.T @ self.B.T)  # (…, in) → (…, r) → (…, out)

    def _check_mergeable(self) -> None:
        if not self.base.weight.is_floating_point() or type(self.base) is not nn.Linear:
            raise TypeError(
                f"Impossible de fusionner LoRA dans une couche {type(self.base).__name__} aux poids "
                f"{self.base.weight.dtype} : la fusion demande une nn.Linear en flottants (déquantifiez d'abord)."
            )

    @torch.no_grad()
    def merge(self) -> LoRALinear:
        """Ajoute ΔW aux poids de base : l'inférence ne paie plus rien pour LoRA."""
        self._check_mergeable()
        if self.merged:
            raise ValueError("Les poids LoRA sont déjà fusionnés : appelez unmerge() avant de fusionner à nouveau.")
        self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        self.merged = True
        return self

    @torch.no_grad()
    def unmerge(self) -> LoRALinear:
        """Retire ΔW des poids de base (inverse de :meth:`merge`, aux arrondis près)."""
        self._check_mergeable()
        if not self.merged:
            raise ValueError("Les poids LoRA ne sont pas fusionnés : rien à défaire.")
        self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
        self.merged = False
        return self

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:g}, merged={self.merged}"


def _matches(name: str, targets: Iterable[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def targeted_layers(model: nn.Module, target_modules: Iterable[str]) -> list[tuple[str, nn.Linear]]:
    """Les ``(nom, couche)`` ``nn.Linear`` de ``model`` visées par ``target_modules`` (nom complet ou dernier
    composant), sans rien modifier.

    ``TypeError`` si ``model`` n'est pas un ``nn.Module`` ou si les cibles ne sont pas des chaînes ;
    ``ValueError`` si la liste est vide ou si une cible ne désigne aucune couche linéaire (le message nomme
    la cible et liste les couches disponibles) : une faute de frappe ne compte jamais zéro paramètre.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model doit être un torch.nn.Module, reçu {type(model).__name__}.")
    targets = [target_modules] if isinstance(target_modules, str) else target_modules
    try:
        targets = list(targets)
    except TypeError:
        raise TypeError(f"target_modules doit être une liste de noms de couches, reçu {type(target_modules).__name__}.") from None
    if not targets:
        raise ValueError("target_modules est vide : donnez des noms de couches, par exemple ['q_proj', 'v_proj'].")
    bad = [t for t in targets if not isinstance(t, str)]
    if bad:
        raise TypeError(f"target_modules doit contenir des noms de couches (chaînes) ; reçu {bad!r}.")
    linear = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    unknown = [t for t in targets if not any(_matches(name, [t]) for name, _ in linear)]
    if unknown:
        available = sorted({name.rsplit(".", 1)[-1] for name, _ in linear})
        raise ValueError(f"Aucune couche nn.Linear ne correspond à {unknown} (target_modules) dans "
                         f"{type(model).__name__} ; couches linéaires disponibles : {', '.join(available) or 'aucune'}.")
    return [(name, m) for name, m in linear if _matches(name, targets)]


def apply_lora(model: nn.Module, target_modules: Iterable[str], r: int, alpha: float, dropout: float = 0.0) -> nn.Module:
    """Remplace chaque ``nn.Linear`` dont le nom finit par une cible par une :class:`LoRALinear`.

    Tous les autres paramètres du modèle sont gelés. Tout est vérifié avant de
    toucher au modèle : ``ValueError`` si une cible ne désigne aucune couche ou
    si le rang dépasse une couche visée (le modèle reste alors intact).
    """
    found = targeted_layers(model, target_modules)
    r, alpha, dropout = check_rank_alpha(r, alpha, dropout)
    _check_rank_fits(r, found)
    for p in model.parameters():
        p.requires_grad_(False)
    for name, module in found:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(module, r, alpha, dropout))
    return model


def lora_parameter_count(model: nn.Module, r: int, target_modules: Iterable[str]) -> int:
    """Nombre de paramètres LoRA, r · (in + out) par couche ciblée, sans modifier le modèle.

    Fonctionne aussi sur un modèle instancié sur le périphérique ``meta`` (sans mémoire).
    Une cible inconnue est une erreur (:func:`targeted_layers`), pas zéro paramètre.
    """
    r = check_rank_alpha(r, 1.0, 0.0)[0]
    found = targeted_layers(model, target_modules)
    _check_rank_fits(r, found)
    return sum(r * (m.in_features + m.out_features) for _, m in found)
