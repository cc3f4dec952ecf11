"""Quatre façons d'adapter un encodeur de phrases à une classification, derrière une même API.

Utilisé par le chapitre « Fine-tuning d'embeddings ou de modèle ? »
(``05_finetuning``). Les quatre approches partent du **même** encodeur (un
dossier sentence-transformers : Transformer + moyenne des jetons) :

``frozen``
    embeddings gelés + régression logistique (scikit-learn) ;
``setfit``
    fine-tuning contrastif de l'encodeur sur des paires « même classe » /
    « classes différentes » (façon SetFit, perte ``CosineSimilarityLoss`` de
    sentence-transformers), puis régression logistique ;
``lora``
    adaptateurs LoRA (peft) dans l'encodeur + tête linéaire, entraînés ensemble ;
``full``
    tous les poids de l'encodeur + tête linéaire.

>>> enc = load_encoder(chemin)
>>> res = run("lora", enc, textes, etiquettes, textes_test, etiquettes_test, labels=LABELS, seed=0)
>>> res.scores["accuracy"], res.train_seconds, res.delta_peak_mb, res.trainable_params, res.artifact_mb

Chaque résultat donne les scores sur le test, la durée et le surcoût mémoire de
l'entraînement (:func:`atelier.measure.measure`), le nombre de paramètres
entraînés et la taille sur disque de ce qu'il faut garder en plus du modèle de
base (tokenizer inchangé non compté).
"""

from __future__ import annotations

import copy
import ctypes
import gc
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import autocast as book_autocast
from .config import seed_everything
from .embeddings import mean_pool  # moyenne masquée du chapitre « Embeddings »
from .fewshot import check_label_names, check_texts, encode_labels
from .measure import measure
from .metrics import classification_scores

APPROACHES = ("frozen", "setfit", "lora", "full")
APPROACH_NAMES = {
    "frozen": "Embeddings gelés + régression logistique",
    "setfit": "Contrastif (SetFit) + régression logistique",
    "lora": "LoRA + tête linéaire",
    "full": "Fine-tuning complet + tête linéaire",
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
    gradient_checkpointing: bool = False
    C: float = 10.0  # régression logistique (frozen, setfit)
    normalize: bool = True  # normalisation L2 des embeddings avant la régression logistique
    encode_batch_size: int = 64
    bf16: bool = False  # précision mixte bfloat16 (torch.autocast), appliquée seulement si config.use_bf16("cpu")
    probe_init: bool = True  # lora, full : tête initialisée par une régression logistique sur les embeddings gelés (LP-FT)

    def __post_init__(self):
        for name in ("max_length", "batch_size", "epochs", "pair_iterations", "lora_r", "encode_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} doit être un entier ≥ 1, reçu {value!r}.")
        if not isinstance(self.freeze_layers, int) or self.freeze_layers < 0:
            raise ValueError(f"freeze_layers doit être un entier ≥ 0, reçu {self.freeze_layers!r}.")
        if self.max_pairs is not None and (not isinstance(self.max_pairs, int) or self.max_pairs < 2):
            raise ValueError(f"max_pairs doit être None ou un entier ≥ 2, reçu {self.max_pairs!r}.")
        if self.max_passes is not None and (not isinstance(self.max_passes, int) or isinstance(self.max_passes, bool)
                                            or self.max_passes < 4):
            raise ValueError(f"max_passes doit être None ou un entier ≥ 4, reçu {self.max_passes!r}.")
        for name in ("head_lr", "C", "lora_alpha"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} doit être strictement positif, reçu {getattr(self, name)!r}.")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr doit être strictement positif ou None, reçu {self.lr!r}.")
        if not 0 <= self.warmup_ratio < 1 or self.weight_decay < 0:
            raise ValueError("warmup_ratio doit être dans [0, 1) et weight_decay ≥ 0.")

    def lr_for(self, approach: str) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[approach]


def same_budget(config: FinetuneConfig, approach: str, n_train: int) -> FinetuneConfig:
    """Règle « même budget de calcul » : ``config.epochs × n_train`` phrases passent dans l'encodeur.

    ``lora`` et ``full`` voient ``epochs`` fois chaque exemple ; ``setfit`` fait une
    seule passe sur ``epochs × n_train / 2`` paires (deux phrases par paire) ;
    ``frozen`` n'entraîne pas l'encodeur (configuration inchangée). Avec
    ``config.max_passes``, le budget est plafonné à ``max_passes`` phrases pour toutes.
    """
    _check_approach(approach)
    if not isinstance(n_train, int) or n_train < 2:
        raise ValueError(f"n_train doit être un entier ≥ 2, reçu {n_train!r}.")
    if approach != "setfit":
        return config
    n_pairs = max(2, min(config.epochs * n_train, config.max_passes or config.epochs * n_train) // 2)
    return replace(config, epochs=1, pair_iterations=math.ceil(n_pairs / (2 * n_train)), max_pairs=n_pairs)


def training_passes(config: FinetuneConfig, approach: str, n_train: int) -> int:
    """Nombre de phrases passées (avant + arrière) dans l'encodeur pendant l'entraînement."""
    _check_approach(approach)
    if approach == "frozen":
        return 0
    if approach == "setfit":
        return 2 * _setfit_pairs(config, n_train) * config.epochs
    return min(n_train * config.epochs, config.max_passes or n_train * config.epochs)


def _setfit_pairs(config: FinetuneConfig, n_train: int) -> int:
    """Nombre de paires que SetFit entraîne (plafonds ``max_pairs`` et ``max_passes`` compris)."""
    n_pairs = 2 * n_train * config.pair_iterations
    if config.max_pairs is not None:
        n_pairs = min(n_pairs, config.max_pairs)
    if config.max_passes is not None:
        n_pairs = min(n_pairs, max(2, config.max_passes // (2 * config.epochs)))
    return n_pairs


def _check_approach(approach: str) -> str:
    if approach not in APPROACHES:
        raise ValueError(f"Approche inconnue : {approach!r}. Approches acceptées : {', '.join(APPROACHES)}.")
    return approach


def set_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Active ou coupe le gradient checkpointing d'un modèle Hugging Face (API de transformers 5 ou 4)."""
    if enabled:
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:  # pragma: no cover - transformers 4
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:  # pragma: no cover - transformers 4
        model.gradient_checkpointing_disable()


def is_checkpointing(model: nn.Module) -> bool:
    """Vrai si le gradient checkpointing est actif sur ce modèle Hugging Face."""
    flag = getattr(model, "is_activation_checkpointing", None)
    return bool(model.is_gradient_checkpointing if flag is None else flag)


def release_memory() -> None:
    """Ramasse-miettes puis rend au système la mémoire libre du tas (mesures de RSS plus justes)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - hors glibc
        pass


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Nombre de paramètres (entraînables seulement, par défaut) d'un module PyTorch."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def dir_size_mb(path: str | Path) -> float:
    """Taille totale des fichiers d'un dossier, en Mio."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


# --------------------------------------------------------------------------- encodeur


def load_encoder(path: str | Path):
    """Charge un dossier sentence-transformers sur CPU : Transformer + moyenne des jetons.

    Le module ``Normalize`` éventuel est retiré (la normalisation devient une
    option explicite) ; le « pooler » BERT, inutilisé par la moyenne, aussi.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # barres « Loading weights » / « Writing model shards »

    st = SentenceTransformer(str(path), device="cpu")
    modules = [m for m in st if not isinstance(m, Normalize)]
    if len(modules) != 2 or not isinstance(modules[0], Transformer) or not isinstance(modules[1], Pooling):
        raise ValueError(f"{path} doit contenir un Transformer suivi d'un Pooling, trouvé {[type(m).__name__ for m in st]}.")
    if modules[1].get_config_dict().get("pooling_mode") not in ("mean", ["mean"], ("mean",)):
        raise ValueError(f"{path} : seule la moyenne des jetons (pooling 'mean') est prise en charge.")
    encoder = SentenceTransformer(modules=modules, device="cpu")
    if getattr(encoder[0].auto_model, "pooler", None) is not None:
        encoder[0].auto_model.pooler = None
    return encoder


def autocast(enabled: bool):
    """Précision mixte sur CPU si ``enabled`` **et** si le livre calcule en bf16 sur ce processeur.

    La décision est celle d':func:`atelier.config.compute_dtype` : sur un CPU
    sans bfloat16 natif (ou avec ``ATELIER_FP32=1``), le calcul reste en
    float32 même si ``enabled`` est vrai.
    """
    return book_autocast("cpu", enabled=bool(enabled))


def embed(encoder, texts, *, prefix: str = "", max_length: int = 64, normalize: bool = True,
          batch_size: int = 64, bf16: bool = False) -> np.ndarray:
    """Embeddings (N, H) d'une liste de textes avec un encodeur sentence-transformers."""
    texts = check_texts(texts)
    encoder.max_seq_length = max_length
    encoder.eval()
    with autocast(bf16):
        out = encoder.encode([prefix + t for t in texts], batch_size=batch_size, normalize_embeddings=normalize,
                             convert_to_tensor=True, show_progress_bar=False)
    return out.float().numpy()


class FeatureCache:
    """Embeddings bruts (moyenne des jetons, non normalisés) de l'encodeur **de base**, calculés une fois par texte.

    L'encodeur de base n'est jamais modifié par :func:`run` : ses embeddings ne
    dépendent que du texte. Le cache sert l'approche ``frozen`` (entraînement et
    test) et l'initialisation de la tête de ``lora`` et ``full`` ; on le crée avec
    les réglages de la configuration (préfixe, longueur, bfloat16), que :func:`run`
    vérifie. Ne pas modifier l'encodeur en place après l'avoir créé.
    """

    def __init__(self, encoder, *, prefix: str = "", max_length: int = 64, bf16: bool = False, batch_size: int = 64):
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length doit être un entier ≥ 1, reçu {max_length!r}.")
        self.encoder, self.prefix, self.max_length, self.bf16 = encoder, prefix, max_length, bool(bf16)
        self.batch_size = batch_size
        self._vectors: dict[str, np.ndarray] = {}
        self._seconds: dict[str, float] = {}  # part de chaque texte dans la durée d'encodage de son lot

    def matches(self, encoder, config: FinetuneConfig) -> bool:
        return (encoder is self.encoder and config.prefix == self.prefix and config.max_length == self.max_length
                and bool(config.bf16) == self.bf16)

    def seconds(self, texts) -> float:
        """Ce qu'a coûté l'encodage de ces textes (déjà en cache), pour l'ajouter au temps d'entraînement."""
        return float(sum(self._seconds[t] for t in dict.fromkeys(check_texts(texts))))

    def __len__(self) -> int:
        return len(self._vectors)

    def __call__(self, texts, *, normalize: bool = False) -> np.ndarray:
        """Embeddings (N, H) des textes ; seuls les textes jamais vus passent dans l'encodeur."""
        texts = check_texts(texts)
        new = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if new:
            start = time.perf_counter()
            x = embed(self.encoder, new, prefix=self.prefix, max_length=self.max_length, normalize=False,
                      batch_size=self.batch_size, bf16=self.bf16)
            share = (time.perf_counter() - start) / len(new)
            self._vectors.update(zip(new, x))
            self._seconds.update((t, share) for t in new)
        out = np.stack([self._vectors[t] for t in texts])
        return out / np.linalg.norm(out, axis=1, keepdims=True) if normalize else out


def pair_cosines(encode_fn, texts_a, texts_b) -> np.ndarray:
    """Cosinus entre les embeddings de paires de textes (``encode_fn`` : textes -> (N, H))."""
    texts_a, texts_b = check_texts(texts_a, name="texts_a"), check_texts(texts_b, name="texts_b")
    if len(texts_a) != len(texts_b):
        raise ValueError(f"texts_a ({len(texts_a)}) et texts_b ({len(texts_b)}) doivent avoir la même longueur.")
    a, b = np.asarray(encode_fn(texts_a)), np.asarray(encode_fn(texts_b))
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


# --------------------------------------------------------------------------- entraînement


def length_grouped_batches(lengths, batch_size: int, generator: torch.Generator, group: int = 16) -> list[list[int]]:
    """Lots d'indices mélangés, mais de longueurs voisines (``group_by_length`` de transformers).

    On mélange, on découpe en blocs de ``group × batch_size`` exemples, on trie
    chaque bloc par longueur décroissante, on le coupe en lots, puis on mélange
    l'ordre des lots : moins de remplissage, donc moins de calcul perdu.
    """
    n = len(lengths)
    order = torch.randperm(n, generator=generator).tolist()
    batches = []
    for start in range(0, n, group * batch_size):
        block = sorted(order[start:start + group * batch_size], key=lambda i: -lengths[i])
        batches += [block[j:j + batch_size] for j in range(0, len(block), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _train_loop(compute_loss, param_groups, n_items: int, *, epochs: int, batch_size: int, seed: int,
                warmup_ratio: float, weight_decay: float, max_grad_norm: float = 1.0,
                lengths=None, max_items: int | None = None) -> list[float]:
    """Boucle AdamW + planning linéaire avec échauffement ; ``compute_loss(indices)`` -> perte.

    Avec ``lengths`` (nombre de jetons de chaque exemple), les lots regroupent des
    exemples de longueurs voisines (:func:`length_grouped_batches`). Avec
    ``max_items``, l'entraînement s'arrête après ce nombre d'exemples (dernier lot
    raccourci) : un budget de calcul fixe, même si les époques ne sont pas finies.
    """
    from transformers import get_linear_schedule_with_warmup

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
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return losses


def contrastive_finetune(encoder, texts_a, texts_b, targets, *, loss: str = "cosine", epochs: int = 1,
                         batch_size: int = 16, lr: float = 2e-5, seed: int = 0, prefix: str = "",
                         max_length: int = 64, warmup_ratio: float = 0.1, weight_decay: float = 0.01,
                         gradient_checkpointing: bool = False, bf16: bool = False) -> list[float]:
    """Fine-tune **en place** un encodeur sentence-transformers sur des paires de textes.

    ``loss="cosine"`` : ``CosineSimilarityLoss`` (cosinus ramené vers ``targets`` ∈ [0, 1]) ;
    ``loss="mnrl"`` : ``MultipleNegativesRankingLoss`` (paires positives seulement,
    les autres phrases du lot servent de négatifs ; ``targets`` ignoré).
    Renvoie la perte de chaque pas.
    """
    from sentence_transformers.sentence_transformer import losses

    texts_a, texts_b = check_texts(texts_a, name="texts_a"), check_texts(texts_b, name="texts_b")
    targets = np.asarray(targets, dtype=np.float32)
    if not len(texts_a) == len(texts_b) == len(targets):
        raise ValueError(f"texts_a ({len(texts_a)}), texts_b ({len(texts_b)}) et targets ({len(targets)}) "
                         "doivent avoir la même longueur.")
    if loss == "cosine":
        if targets.min() < 0 or targets.max() > 1:
            raise ValueError("Avec loss='cosine', les cibles doivent être dans [0, 1] (score / 5 pour STS-B).")
        loss_fn = losses.CosineSimilarityLoss(encoder)
    elif loss == "mnrl":
        loss_fn = losses.MultipleNegativesRankingLoss(encoder)
    else:
        raise ValueError(f"Perte inconnue : {loss!r}. Pertes acceptées : 'cosine', 'mnrl'.")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} doit être un entier ≥ 1, reçu {value!r}.")
    encoder.max_seq_length = max_length
    hf = encoder[0].auto_model
    if gradient_checkpointing:
        set_checkpointing(hf, True)
    encoder.train()
    torch.manual_seed(seed)

    def compute_loss(idx):
        fa = encoder.preprocess([prefix + texts_a[i] for i in idx])
        fb = encoder.preprocess([prefix + texts_b[i] for i in idx])
        with autocast(bf16):
            return loss_fn([fa, fb], torch.from_numpy(targets[idx])).float()

    params = [p for p in encoder.parameters() if p.requires_grad]
    n_tokens = lambda texts: [len(ids) for ids in encoder.tokenizer([prefix + t for t in texts], truncation=True,
                                                                    max_length=max_length)["input_ids"]]
    lengths = [max(a, b) for a, b in zip(n_tokens(texts_a), n_tokens(texts_b))]
    try:
        return _train_loop(compute_loss, [{"params": params, "lr": lr}], len(texts_a), epochs=epochs,
                           batch_size=batch_size, seed=seed, warmup_ratio=warmup_ratio, weight_decay=weight_decay,
                           lengths=lengths)
    finally:
        encoder.eval()
        if gradient_checkpointing:
            set_checkpointing(hf, False)


def contrastive_pairs(y, *, iterations: int = 1, seed: int = 0, max_pairs: int | None = None):
    """Paires façon SetFit : pour chaque exemple, une paire même classe (cible 1) et une paire
    classe différente (cible 0), ``iterations`` fois. Renvoie (indices_a, indices_b, cibles)."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
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


class FrozenClassifier:
    """Embeddings de l'encodeur (partagé, jamais modifié) + régression logistique."""

    approach = "frozen"

    def __init__(self, encoder, n_classes: int, config: FinetuneConfig, cache: FeatureCache | None = None):
        self.encoder, self.n_classes, self.cfg, self.cache = encoder, n_classes, config, cache
        self.head = None

    def encode(self, texts) -> np.ndarray:
        """Embeddings normalisés (N, H) : pour la similarité et les clusters."""
        return embed(self.encoder, texts, prefix=self.cfg.prefix, max_length=self.cfg.max_length,
                     normalize=True, batch_size=self.cfg.encode_batch_size, bf16=self.cfg.bf16)

    def features(self, texts) -> np.ndarray:
        """Ce que voit la tête : embeddings normalisés ou non selon ``config.normalize``."""
        if self.cache is not None:
            return self.cache(texts, normalize=self.cfg.normalize)
        return embed(self.encoder, texts, prefix=self.cfg.prefix, max_length=self.cfg.max_length,
                     normalize=self.cfg.normalize, batch_size=self.cfg.encode_batch_size, bf16=self.cfg.bf16)

    def _fit_head(self, x: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        self.head = LogisticRegression(C=self.cfg.C, max_iter=3000).fit(x, y)

    def fit(self, texts, y, seed: int = 0):
        self._fit_head(self.features(texts), np.asarray(y))
        return self

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        return self.head.predict(x)

    def predict(self, texts) -> np.ndarray:
        return self.predict_features(self.features(texts))

    def trainable_parameters(self) -> int:
        return int(self.head.coef_.size + self.head.intercept_.size)

    def _save_head(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        save_file({"weight": self.head.coef_.astype(np.float32), "bias": self.head.intercept_.astype(np.float32)},
                  str(directory / "head.safetensors"))

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_head(directory)
        return directory


class SetFitClassifier(FrozenClassifier):
    """Copie de l'encodeur fine-tunée par paires contrastives, puis régression logistique."""

    approach = "setfit"

    def __init__(self, encoder, n_classes: int, config: FinetuneConfig):
        super().__init__(copy.deepcopy(encoder), n_classes, config)
        self.losses: list[float] = []

    def fit(self, texts, y, seed: int = 0):
        texts, y = check_texts(texts), np.asarray(y)
        ia, ib, t = contrastive_pairs(y, iterations=self.cfg.pair_iterations, seed=seed,
                                      max_pairs=_setfit_pairs(self.cfg, len(texts)))
        self.losses = contrastive_finetune(
            self.encoder, [texts[i] for i in ia], [texts[i] for i in ib], t, loss="cosine",
            epochs=self.cfg.epochs, batch_size=self.cfg.batch_size, lr=self.cfg.lr_for("setfit"), seed=seed,
            prefix=self.cfg.prefix, max_length=self.cfg.max_length, warmup_ratio=self.cfg.warmup_ratio,
            weight_decay=self.cfg.weight_decay, gradient_checkpointing=self.cfg.gradient_checkpointing,
            bf16=self.cfg.bf16)
        self._fit_head(self.features(texts), y)
        return self

    def trainable_parameters(self) -> int:
        return count_parameters(self.encoder) + super().trainable_parameters()

    def save(self, directory: str | Path) -> Path:
        directory = super().save(directory)
        self.encoder[0].auto_model.save_pretrained(directory / "encoder")
        return directory


class MeanPoolClassifier(nn.Module):
    """Transformer (Hugging Face) + moyenne des jetons + tête linéaire."""

    def __init__(self, backbone: nn.Module, n_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.hidden_size, n_classes)

    def embed(self, input_ids, attention_mask, **kwargs) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state  # (B, T, H)
        return mean_pool(hidden, attention_mask)  # (B, H)

    def forward(self, input_ids, attention_mask, **kwargs) -> torch.Tensor:
        return self.head(self.embed(input_ids, attention_mask, **kwargs))  # (B, C)


class TorchClassifier:
    """LoRA (``lora``) ou tous les poids (``full``) de l'encodeur + tête linéaire, entraînés ensemble."""

    def __init__(self, encoder, n_classes: int, config: FinetuneConfig, approach: str = "full",
                 cache: FeatureCache | None = None):
        if approach not in ("lora", "full"):
            raise ValueError(f"TorchClassifier accepte 'lora' ou 'full', reçu {approach!r}.")
        self.approach, self.cfg, self.n_classes, self.cache = approach, config, n_classes, cache
        self.tokenizer = encoder.tokenizer
        self.model: MeanPoolClassifier | None = None
        self.losses: list[float] = []
        self._base = encoder[0].auto_model

    def _build(self, seed: int) -> MeanPoolClassifier:
        torch.manual_seed(seed)
        backbone = copy.deepcopy(self._base)
        if self.cfg.gradient_checkpointing:
            set_checkpointing(backbone, True)
        if self.approach == "lora":
            from peft import LoraConfig, get_peft_model

            backbone = get_peft_model(backbone, LoraConfig(
                r=self.cfg.lora_r, lora_alpha=self.cfg.lora_alpha, lora_dropout=0.0,
                target_modules=list(self.cfg.lora_targets)))
        elif self.cfg.freeze_layers:
            layers = backbone.encoder.layer
            if self.cfg.freeze_layers > len(layers):
                raise ValueError(f"freeze_layers={self.cfg.freeze_layers} dépasse le nombre de couches ({len(layers)}).")
            for module in [backbone.embeddings, *layers[: self.cfg.freeze_layers]]:
                module.requires_grad_(False)
        return MeanPoolClassifier(backbone, self.n_classes)

    def _batch(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer([self.cfg.prefix + t for t in texts], padding=True, truncation=True,
                              max_length=self.cfg.max_length, return_tensors="pt")

    def fit(self, texts, y, seed: int = 0):
        texts, y = check_texts(texts), torch.as_tensor(np.asarray(y), dtype=torch.long)
        self.model = model = self._build(seed)
        if self.cfg.probe_init:
            self.init_head_from_probe(texts, y.numpy())
        model.train()
        body = [p for p in model.backbone.parameters() if p.requires_grad]
        groups = [{"params": body, "lr": self.cfg.lr_for(self.approach)},
                  {"params": list(model.head.parameters()), "lr": self.cfg.head_lr}]

        def compute_loss(idx):
            batch = self._batch([texts[i] for i in idx])
            with autocast(self.cfg.bf16):
                logits = model(batch["input_ids"], batch["attention_mask"])  # (B, C)
            return nn.functional.cross_entropy(logits.float(), y[idx])

        lengths = [len(ids) for ids in self.tokenizer([self.cfg.prefix + t for t in texts], truncation=True,
                                                      max_length=self.cfg.max_length)["input_ids"]]
        self.losses = _train_loop(compute_loss, groups, len(texts), epochs=self.cfg.epochs,
                                  batch_size=self.cfg.batch_size, seed=seed, warmup_ratio=self.cfg.warmup_ratio,
                                  weight_decay=self.cfg.weight_decay, lengths=lengths,
                                  max_items=self.cfg.max_passes)
        model.eval()
        return self

    def init_head_from_probe(self, texts, y: np.ndarray) -> None:
        """« Linear probing then fine-tuning » : la tête part d'une régression logistique
        ajustée sur les embeddings (encore gelés) des exemples d'entraînement."""
        from sklearn.linear_model import LogisticRegression

        x = self.cache(texts) if self.cache is not None else self.features(texts)
        probe = LogisticRegression(C=self.cfg.C, max_iter=3000).fit(x, y)
        if probe.coef_.shape[0] != self.n_classes:
            raise ValueError(f"Toutes les classes doivent figurer dans l'entraînement ({self.n_classes} attendues).")
        with torch.no_grad():
            self.model.head.weight.copy_(torch.from_numpy(probe.coef_).float())
            self.model.head.bias.copy_(torch.from_numpy(probe.intercept_).float())

    @torch.inference_mode()
    def features(self, texts) -> np.ndarray:
        """Embeddings moyens non normalisés (N, H), ce que voit la tête ; lots triés par longueur."""
        texts = check_texts(texts)
        self.model.eval()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.model.head.in_features), dtype=np.float32)
        bs = self.cfg.encode_batch_size
        for start in range(0, len(texts), bs):
            idx = order[start:start + bs]
            batch = self._batch([texts[i] for i in idx])
            with autocast(self.cfg.bf16):
                out[idx] = self.model.embed(batch["input_ids"], batch["attention_mask"]).float().numpy()
        return out

    def encode(self, texts) -> np.ndarray:
        x = self.features(texts)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    @torch.inference_mode()
    def predict_features(self, x: np.ndarray) -> np.ndarray:
        return self.model.head(torch.from_numpy(np.asarray(x, dtype=np.float32))).argmax(-1).numpy()

    def predict(self, texts) -> np.ndarray:
        return self.predict_features(self.features(texts))

    def trainable_parameters(self) -> int:
        return count_parameters(self.model)

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.model.head.state_dict().items()}, str(directory / "head.safetensors"))
        # LoRA : peft n'écrit que les adaptateurs ; complet : tous les poids de l'encodeur.
        self.model.backbone.save_pretrained(directory / "encoder")
        return directory


def make_classifier(approach: str, encoder, n_classes: int, config: FinetuneConfig | None = None,
                    cache: FeatureCache | None = None):
    """Construit le classifieur d'une approche (``frozen``, ``setfit``, ``lora``, ``full``).

    ``cache`` (:class:`FeatureCache` de ``encoder``, mêmes réglages que ``config``)
    évite de réencoder les textes avec l'encodeur de base (``frozen``, tête de ``lora``/``full``).
    """
    config = config or FinetuneConfig()
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config doit être un FinetuneConfig, reçu {type(config).__name__}.")
    _check_approach(approach)
    if cache is not None:
        if not isinstance(cache, FeatureCache):
            raise TypeError(f"cache doit être un FeatureCache ou None, reçu {type(cache).__name__}.")
        if not cache.matches(encoder, config):
            raise ValueError("Le cache ne correspond pas : il faut le même encodeur et les mêmes préfixe, "
                             "max_length et bf16 que la configuration.")
    if approach == "frozen":
        return FrozenClassifier(encoder, n_classes, config, cache)
    if approach == "setfit":
        return SetFitClassifier(encoder, n_classes, config)
    return TorchClassifier(encoder, n_classes, config, approach, cache)


# --------------------------------------------------------------------------- expérience


@dataclass
class FinetuneResult:
    """Résultat d'un entraînement + évaluation (voir :func:`run`)."""

    approach: str
    n_train: int
    seed: int
    scores: dict[str, float]
    train_seconds: float
    start_mb: float
    peak_mb: float
    delta_peak_mb: float
    trainable_params: int
    artifact_mb: float | None
    test_predictions: np.ndarray = field(repr=False)
    test_embeddings: np.ndarray = field(repr=False)
    classifier: object = field(default=None, repr=False)

    def row(self) -> dict:
        """Une ligne de tableau (sans les tableaux NumPy ni le modèle)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("test_predictions", "test_embeddings", "classifier", "scores")}
        return {**d, **self.scores}


def run(approach: str, encoder, train_texts, train_labels, test_texts, test_labels, *, labels,
        config: FinetuneConfig | None = None, seed: int = 0, save_artifact: bool = True,
        keep_classifier: bool = False, cache: FeatureCache | None = None) -> FinetuneResult:
    """Entraîne une approche, la mesure (temps, mémoire), l'évalue sur le test, pèse l'artefact.

    ``labels`` : noms des classes (les étiquettes peuvent être ces noms ou leurs indices).
    ``cache`` : embeddings de l'encodeur de base déjà calculés (:class:`FeatureCache`) ;
    la durée d'entraînement compte quand même ce qu'a coûté leur calcul.
    """
    _check_approach(approach)
    labels = check_label_names(labels)
    train_texts, test_texts = check_texts(train_texts, name="train_texts"), check_texts(test_texts, name="test_texts")
    y_train, y_test = encode_labels(train_labels, labels), encode_labels(test_labels, labels)
    if len(y_train) != len(train_texts) or len(y_test) != len(test_texts):
        raise ValueError("Il faut autant d'étiquettes que de textes (entraînement et test).")
    clf = make_classifier(approach, encoder, len(labels), config, cache)
    release_memory()
    seed_everything(int(seed))
    with measure() as m:
        clf.fit(train_texts, y_train, seed=int(seed))
    # Embeddings de base servis par le cache : on compte ce qu'ils ont coûté à calculer.
    uses_cache = cache is not None and (approach == "frozen" or (approach != "setfit" and clf.cfg.probe_init))
    cached_seconds = cache.seconds(train_texts) if uses_cache else 0.0
    feats = clf.features(test_texts)
    pred = clf.predict_features(feats)
    emb = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    size = None
    if save_artifact:
        tmp = Path(tempfile.mkdtemp(prefix=f"atelier-{approach}-"))
        try:
            size = dir_size_mb(clf.save(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    result = FinetuneResult(
        approach=approach, n_train=len(train_texts), seed=int(seed), scores=classification_scores(y_test, pred),
        train_seconds=m.seconds + cached_seconds, start_mb=m.start_mb, peak_mb=m.peak_mb, delta_peak_mb=m.delta_peak_mb,
        trainable_params=clf.trainable_parameters(), artifact_mb=size, test_predictions=pred,
        test_embeddings=emb, classifier=clf if keep_classifier else None)
    del clf
    release_memory()
    return result


def training_step_cost(encoder, texts, *, n_classes: int, batch_size: int, seq_len: int,
                       gradient_checkpointing: bool, steps: int = 1, config: FinetuneConfig | None = None) -> dict:
    """Durée et surcoût mémoire d'un pas avant + arrière du fine-tuning complet, à longueur fixe.

    Les textes sont complétés (``padding="max_length"``) à ``seq_len`` jetons pour
    simuler des documents plus longs. Sert à mesurer le gradient checkpointing.
    """
    texts = check_texts(texts)
    if len(texts) < batch_size:
        raise ValueError(f"Il faut au moins batch_size={batch_size} textes, reçu {len(texts)}.")
    cfg = replace(config or FinetuneConfig(), gradient_checkpointing=gradient_checkpointing, max_length=seq_len)
    clf = TorchClassifier(encoder, n_classes, cfg, "full")
    model = clf._build(seed=0)
    model.train()
    batch = clf.tokenizer([cfg.prefix + t for t in texts[:batch_size]], padding="max_length", truncation=True,
                          max_length=seq_len, return_tensors="pt")
    y = torch.arange(batch_size) % n_classes
    release_memory()
    with measure() as m:
        for _ in range(steps):
            with autocast(cfg.bf16):
                logits = model(batch["input_ids"], batch["attention_mask"])  # (B, C)
            loss = nn.functional.cross_entropy(logits.float(), y)
            loss.backward()
            model.zero_grad(set_to_none=True)
    out = {"seconds_per_step": m.seconds / steps, "delta_peak_mb": m.delta_peak_mb, "loss": float(loss.detach())}
    del model, clf
    release_memory()
    return out
