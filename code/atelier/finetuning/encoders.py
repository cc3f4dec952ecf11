"""L'encodeur de phrases du chapitre 05 : chargement, embeddings, cache et outils de mesure.

Un encodeur est un dossier sentence-transformers (Transformer + moyenne des
jetons) ; :class:`FeatureCache` garde les embeddings de l'encodeur de base pour
ne les calculer qu'une fois par texte (dans le cache du livre,
:class:`atelier.embeddings.cache.EmbeddingCache`) et note ce qu'ils ont coûté.
"""

from __future__ import annotations

import ctypes
import gc
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from atelier.embeddings.cache import EmbeddingCache
from atelier.finetuning.budget import FinetuneConfig
from atelier.finetuning.fewshot import check_texts
from atelier.runtime.checks import check_int, check_type
from atelier.runtime.config import autocast as book_autocast
from atelier.runtime.config import default_device, model_device
from atelier.runtime.measure import disk_bytes

def check_encoder(encoder):
    """``encoder`` s'il a l'allure d'un SentenceTransformer (méthode ``encode`` et ``tokenizer``), sinon ``TypeError``."""
    if not (callable(getattr(encoder, "encode", None)) and hasattr(encoder, "tokenizer")):
        raise TypeError(f"encoder doit être un encodeur sentence-transformers (load_encoder(chemin)), "
                        f"reçu {type(encoder).__name__}.")
    return encoder


def set_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Active ou coupe le gradient checkpointing d'un modèle Hugging Face (API de transformers 5 ou 4)."""
    if not callable(getattr(model, "gradient_checkpointing_enable", None)):
        raise TypeError(f"model doit être un modèle Hugging Face (PreTrainedModel), reçu {type(model).__name__}.")
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


def dir_size_mb(path: str | Path) -> float:
    """Taille totale des fichiers d'un dossier, en Mio (:func:`atelier.runtime.measure.disk_bytes`)."""
    return disk_bytes(path) / 2**20


# --------------------------------------------------------------------------- encodeur


def load_encoder(path: str | Path, device=None):
    """Charge un dossier sentence-transformers (ou un identifiant du hub) sur ``device`` : Transformer + moyenne des jetons.

    ``device`` : par défaut le GPU s'il y en a un, sinon le CPU (:func:`atelier.runtime.config.default_device`) ;
    classifieurs et boucles d'entraînement suivent ensuite le périphérique de l'encodeur.
    Le module ``Normalize`` éventuel est retiré (la normalisation devient une
    option explicite) ; le « pooler » BERT, inutilisé par la moyenne, aussi.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # barres « Loading weights » / « Writing model shards »

    check_type("path", path, (str, Path))
    device = str(default_device() if device is None else check_type("device", device, (str, torch.device)))
    folder = Path(path)
    if not folder.is_dir() and isinstance(path, str) and path.count("/") == 1:  # identifiant du hub (profil full)
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(path))  # cache du hub d'abord ; hors ligne, le cache seul
        except Exception as exc:  # noqa: BLE001 - toute erreur du hub devient une erreur française
            raise ValueError(f"path : modèle {path!r} introuvable dans le cache du hub ni sur le hub "
                             f"({type(exc).__name__}).") from exc
    if not (folder / "modules.json").is_file():
        raise ValueError(f"path : dossier sentence-transformers introuvable (pas de modules.json) ; reçu {str(path)!r}.")
    st = SentenceTransformer(str(folder), device=device)
    modules = [m for m in st if not isinstance(m, Normalize)]
    if len(modules) != 2 or not isinstance(modules[0], Transformer) or not isinstance(modules[1], Pooling):
        raise ValueError(f"{path} doit contenir un Transformer suivi d'un Pooling, trouvé {[type(m).__name__ for m in st]}.")
    if modules[1].get_config_dict().get("pooling_mode") not in ("mean", ["mean"], ("mean",)):
        raise ValueError(f"{path} : seule la moyenne des jetons (pooling 'mean') est prise en charge.")
    encoder = SentenceTransformer(modules=modules, device=device)
    if getattr(encoder[0].auto_model, "pooler", None) is not None:
        encoder[0].auto_model.pooler = None
    return encoder


def autocast(enabled: bool, device=None):
    """Précision mixte sur ``device`` (défaut : :func:`atelier.runtime.config.default_device`) si ``enabled``
    **et** si le livre y calcule en précision réduite.

    La décision est celle d':func:`atelier.runtime.config.compute_dtype` : sur un CPU
    sans bfloat16 natif (ou avec ``ATELIER_FP32=1``), le calcul reste en
    float32 même si ``enabled`` est vrai ; sur un GPU sans bf16 (T4), il se fait
    en float16 (entraînement avec :func:`atelier.runtime.config.grad_scaler`).
    """
    return book_autocast(device, enabled=bool(enabled))


def embed(encoder, texts, *, prefix: str = "", max_length: int = 64, normalize: bool = True,
          batch_size: int = 64, bf16: bool = False) -> np.ndarray:
    """Embeddings (N, H) d'une liste de textes avec un encodeur sentence-transformers."""
    texts = check_texts(texts)
    check_encoder(encoder)
    check_type("prefix", prefix, str)
    encoder.max_seq_length = check_int("max_length", max_length, min=1)
    batch_size = check_int("batch_size", batch_size, min=1)
    encoder.eval()
    with autocast(bf16, model_device(encoder)):
        out = encoder.encode([prefix + t for t in texts], batch_size=batch_size, normalize_embeddings=normalize,
                             convert_to_tensor=True, show_progress_bar=False)
    return out.float().cpu().numpy()


class FeatureCache:
    """Embeddings bruts (moyenne des jetons, non normalisés) de l'encodeur **de base**, calculés une fois par texte.

    L'encodeur de base n'est jamais modifié par :func:`run` : ses embeddings ne
    dépendent que du texte. Le cache sert l'approche ``frozen`` (entraînement et
    test) et l'initialisation de la tête de ``lora`` et ``full`` ; on le crée avec
    les réglages de la configuration (préfixe, longueur, bfloat16), que :func:`run`
    vérifie. Ne pas modifier l'encodeur en place après l'avoir créé.
    """

    def __init__(self, encoder, *, prefix: str = "", max_length: int = 64, bf16: bool = False, batch_size: int = 64):
        max_length = check_int("max_length", max_length, min=1)
        batch_size = check_int("batch_size", batch_size, min=1)
        check_encoder(encoder)
        check_type("prefix", prefix, str)
        self.encoder, self.prefix, self.max_length, self.bf16 = encoder, prefix, max_length, bool(bf16)
        self.batch_size = batch_size
        self._store = EmbeddingCache()  # le cache du livre (chapitre 02), en mémoire
        self._seconds: dict[str, float] = {}  # part de chaque texte dans la durée d'encodage de son lot

    def matches(self, encoder, config: FinetuneConfig) -> bool:
        return (encoder is self.encoder and config.prefix == self.prefix and config.max_length == self.max_length
                and bool(config.bf16) == self.bf16)

    def seconds(self, texts) -> float:
        """Ce qu'a coûté l'encodage de ces textes (déjà en cache), pour l'ajouter au temps d'entraînement."""
        return float(sum(self._seconds[t] for t in dict.fromkeys(check_texts(texts))))

    def __len__(self) -> int:
        return len(self._store)

    def _encode(self, new: list[str]) -> np.ndarray:
        start = time.perf_counter()
        x = embed(self.encoder, new, prefix=self.prefix, max_length=self.max_length, normalize=False,
                  batch_size=self.batch_size, bf16=self.bf16)
        share = (time.perf_counter() - start) / len(new)
        self._seconds.update((t, share) for t in new)
        return x

    def __call__(self, texts, *, normalize: bool = False) -> np.ndarray:
        """Embeddings (N, H) des textes ; seuls les textes jamais vus passent dans l'encodeur."""
        out = self._store.encode("base", check_texts(texts), self._encode)
        return out / np.linalg.norm(out, axis=1, keepdims=True) if normalize else out


def embeddings_of(encode_fn, texts: list[str]) -> np.ndarray:
    """``encode_fn(texts)`` vérifié : une matrice ``(N, H)`` finie, sans ligne nulle (un cosinus y serait indéfini)."""
    if not callable(encode_fn):
        raise TypeError(f"encode_fn doit être une fonction textes -> embeddings (N, H), reçu {type(encode_fn).__name__}.")
    x = np.asarray(encode_fn(texts), dtype=float)
    if x.ndim != 2 or x.shape[0] != len(texts):
        raise ValueError(f"encode_fn a renvoyé la forme {x.shape} pour {len(texts)} textes : attendu ({len(texts)}, H).")
    if not np.isfinite(x).all() or not np.linalg.norm(x, axis=1).all():
        raise ValueError("encode_fn a renvoyé des embeddings non finis (NaN, inf) ou nuls : le cosinus n'est pas défini.")
    return x


def pair_cosines(encode_fn, texts_a, texts_b) -> np.ndarray:
    """Cosinus entre les embeddings de paires de textes (``encode_fn`` : textes -> (N, H))."""
    texts_a, texts_b = check_texts(texts_a, name="texts_a"), check_texts(texts_b, name="texts_b")
    if len(texts_a) != len(texts_b):
        raise ValueError(f"texts_a ({len(texts_a)}) et texts_b ({len(texts_b)}) doivent avoir la même longueur.")
    a, b = embeddings_of(encode_fn, texts_a), embeddings_of(encode_fn, texts_b)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


# --------------------------------------------------------------------------- entraînement
