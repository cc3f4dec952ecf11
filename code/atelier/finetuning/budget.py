"""Approches, configuration et règle « même budget de calcul » du chapitre 05.

Les quatre approches (``frozen``, ``setfit``, ``lora``, ``full``) partagent une
même :class:`FinetuneConfig` ; :func:`same_budget` et :func:`training_passes`
fixent et comptent le calcul que chacune reçoit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from atelier.runtime.checks import check_float, check_int, check_type

APPROACHES = ("frozen", "setfit", "lora", "full")
APPROACH_NAMES = {
    "frozen": "Embeddings gelés + régression logistique",
    "setfit": "Contrastif (SetFit) + régression logistique",
    "lora": "LoRA + tête linéaire",
    "full": "Affinage complet + tête linéaire",
}
DEFAULT_LR = {"setfit": 2e-5, "lora": 5e-4, "full": 5e-5}


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyperparamètres communs ; ``lr=None`` prend la valeur par défaut de l'approche."""

    prefix: str = ""  # e5 : "query: "
    max_length: int = 64  # jetons, préfixe compris
    batch_size: int = 16
    epochs: int = 3
    lr: float | None = None
    head_lr: float = 2e-3  # tête linéaire (lora, full)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    pair_iterations: int = 1  # setfit : une paire positive et une négative par exemple et par itération
    max_pairs: int | None = None  # setfit : plafond du nombre de paires
    max_passes: int | None = None  # setfit, lora, full : plafond de phrases passées dans l'encodeur (budget de calcul)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ("query", "key", "value", "dense")
    freeze_layers: int = 0  # full : gèle les embeddings et les n premières couches
    freeze_word_embeddings: bool = False  # setfit, full : gèle la table des plongements de mots (vocabulaire)
    gradient_checkpointing: bool = False
    C: float = 10.0  # régression logistique (frozen, setfit)
    normalize: bool = True  # normalisation L2 des embeddings avant la régression logistique
    encode_batch_size: int = 64
    bf16: bool = False  # précision mixte (torch.autocast) sur le périphérique de l'encodeur, si config.compute_dtype la permet
    probe_init: bool = True  # lora, full : tête initialisée par une régression logistique sur les embeddings gelés (LP-FT)

    def __post_init__(self):
        check_type("prefix", self.prefix, str)
        for name in ("max_length", "batch_size", "epochs", "pair_iterations", "lora_r", "encode_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} doit être un entier ≥ 1, reçu {value!r}.")
        check_int("freeze_layers", self.freeze_layers, min=0)
        for name in ("freeze_word_embeddings", "gradient_checkpointing", "normalize", "bf16", "probe_init"):
            check_type(name, getattr(self, name), bool)
        targets = self.lora_targets
        if isinstance(targets, str) or not isinstance(targets, (tuple, list)) or not targets \
                or not all(isinstance(t, str) and t for t in targets):
            raise TypeError(f"lora_targets doit être un tuple non vide de noms de couches, par exemple "
                            f"('query', 'value') ; reçu {targets!r}.")
        object.__setattr__(self, "lora_targets", tuple(targets))  # une liste devient un tuple (classe figée)
        if self.max_pairs is not None and (not isinstance(self.max_pairs, int) or self.max_pairs < 2):
            raise ValueError(f"max_pairs doit être None ou un entier ≥ 2, reçu {self.max_pairs!r}.")
        if self.max_passes is not None and (not isinstance(self.max_passes, int) or isinstance(self.max_passes, bool)
                                            or self.max_passes < 4):
            raise ValueError(f"max_passes doit être None ou un entier ≥ 4, reçu {self.max_passes!r}.")
        for name in ("head_lr", "C", "lora_alpha"):
            check_float(name, getattr(self, name), min=0, min_open=True)
        if self.lr is not None:
            check_float("lr (None ou un nombre)", self.lr, min=0, min_open=True)
        check_float("warmup_ratio", self.warmup_ratio, min=0, max=1, max_open=True)
        check_float("weight_decay", self.weight_decay, min=0)

    def lr_for(self, approach: str) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[approach]


def same_budget(config: FinetuneConfig, approach: str, n_train: int) -> FinetuneConfig:
    """Règle « même budget de calcul » : ``config.epochs × n_train`` phrases passent dans l'encodeur.

    ``lora`` et ``full`` voient ``epochs`` fois chaque exemple ; ``setfit`` fait une
    seule passe sur ``epochs × n_train / 2`` paires (deux phrases par paire) ;
    ``frozen`` n'entraîne pas l'encodeur (configuration inchangée). Avec
    ``config.max_passes``, le budget est plafonné à ``max_passes`` phrases pour toutes.
    """
    check_config(config)
    check_approach(approach)
    n_train = check_int("n_train", n_train, min=2)
    if approach != "setfit":
        return config
    n_pairs = max(2, min(config.epochs * n_train, config.max_passes or config.epochs * n_train) // 2)
    return replace(config, epochs=1, pair_iterations=math.ceil(n_pairs / (2 * n_train)), max_pairs=n_pairs)


def training_passes(config: FinetuneConfig, approach: str, n_train: int) -> int:
    """Nombre de phrases passées (avant + arrière) dans l'encodeur pendant l'entraînement."""
    check_config(config)
    check_approach(approach)
    n_train = check_int("n_train", n_train, min=1)
    if approach == "frozen":
        return 0
    if approach == "setfit":
        return 2 * setfit_pairs(config, n_train) * config.epochs
    return min(n_train * config.epochs, config.max_passes or n_train * config.epochs)


def setfit_pairs(config: FinetuneConfig, n_train: int) -> int:
    """Nombre de paires que SetFit entraîne (plafonds ``max_pairs`` et ``max_passes`` compris)."""
    check_config(config)
    n_train = check_int("n_train", n_train, min=1)
    n_pairs = 2 * n_train * config.pair_iterations
    if config.max_pairs is not None:
        n_pairs = min(n_pairs, config.max_pairs)
    if config.max_passes is not None:
        n_pairs = min(n_pairs, max(2, config.max_passes // (2 * config.epochs)))
    return n_pairs


def check_config(config) -> FinetuneConfig:
    """``config`` si c'est un :class:`FinetuneConfig`, sinon ``TypeError`` en français."""
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config doit être un FinetuneConfig (par exemple FinetuneConfig(epochs=3)), "
                        f"reçu {type(config).__name__}.")
    return config


def check_approach(approach: str) -> str:
    if approach not in APPROACHES:
        raise ValueError(f"Approche inconnue : {approach!r}. Approches acceptées : {', '.join(APPROACHES)}.")
    return approach
