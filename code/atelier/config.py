"""Réglages communs du livre : profil, dossiers, graines.

Utilisé par tous les chapitres (via :func:`atelier.book.setup`) et par
:mod:`atelier.models` et :mod:`atelier.data`. C'est le **seul** endroit où
l'on lit les variables d'environnement du livre :

``ATELIER_PROFILE``
    ``light`` (modèles livrés sur PyPI, CPU) ou ``full`` (modèles des
    tutoriels d'origine, GPU et accès au hub). Sans variable : ``full`` si un
    GPU CUDA est présent, ``light`` sinon.
``ATELIER_DATA``
    Dossier des jeux de données français (défaut : ``../shared/data`` à côté
    du dépôt).
``ATELIER_CACHE``
    Cache des modèles convertis en safetensors (défaut : ``~/.cache/atelier``).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

PROFILES = ("light", "full")

# Racine du dépôt quand le paquet est installé en mode éditable (code/atelier/).
REPO_ROOT = Path(__file__).resolve().parents[2]


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch fait partie des dépendances
        return False
    return bool(torch.cuda.is_available())


def get_profile() -> str:
    """Renvoie le profil actif, ``"light"`` ou ``"full"``.

    La variable ``ATELIER_PROFILE`` l'emporte ; sinon ``full`` si un GPU est
    disponible, ``light`` sinon.
    """
    value = os.environ.get("ATELIER_PROFILE", "").strip().lower()
    if not value:
        return "full" if _cuda_available() else "light"
    if value not in PROFILES:
        raise ValueError(
            f"ATELIER_PROFILE={value!r} n'est pas un profil connu : "
            f"valeurs acceptées {', '.join(PROFILES)}."
        )
    return value


def profile_source() -> str:
    """Dit d'où vient le profil (variable d'environnement ou détection du GPU)."""
    if os.environ.get("ATELIER_PROFILE", "").strip():
        return "variable ATELIER_PROFILE"
    return "détection automatique (GPU CUDA présent)" if _cuda_available() else "défaut (pas de GPU)"


def data_dir() -> Path:
    """Dossier des jeux de données hors ligne (peut ne pas exister)."""
    env = os.environ.get("ATELIER_DATA", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data").resolve()


def cache_dir() -> Path:
    """Dossier de cache des modèles convertis (créé au besoin)."""
    env = os.environ.get("ATELIER_CACHE", "").strip()
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "atelier"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def build_dir() -> Path:
    """Dossier ``_build`` du livre (rapports d'exécution, notebooks exécutés)."""
    env = os.environ.get("ATELIER_BUILD", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    if (REPO_ROOT / "_config.yml").exists():
        return REPO_ROOT / "_build"
    # Paquet installé hors du dépôt (Colab, pip install) : à côté du notebook.
    return Path.cwd() / "_build"


def seed_everything(seed: int = 0) -> int:
    """Fixe les graines de ``random``, NumPy et PyTorch ; renvoie la graine."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"La graine doit être un entier positif ou nul, reçu {seed!r}.")
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
    except ImportError:  # pragma: no cover
        pass
    return seed
