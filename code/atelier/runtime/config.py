"""Réglages communs du livre : profil, dossiers, graines.

Utilisé par tous les chapitres (via :func:`atelier.runtime.book.setup`) et par
:mod:`atelier.assets.models` et :mod:`atelier.assets.data`. C'est le **seul** endroit où
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
``ATELIER_FP32``
    ``1`` : calcul en float32 sur CPU même si le processeur calcule nativement
    en bfloat16 (pour reproduire, sur une machine rapide, le chemin des
    processeurs sans bfloat16 natif). Voir :func:`compute_dtype`.
``ATELIER_THREADS``
    Nombre de fils de calcul PyTorch (défaut : tous les cœurs disponibles).
    Voir :func:`num_threads`.
``ATELIER_DRY_RUN``
    ``1`` : répétition à blanc du profil ``full`` (``make full-dry-run``, ``tools/full_dry_run.py``) :
    des doublures réduites des modèles, sur CPU, et des budgets réduits (époques, pas, effectifs)
    pour que chaque cellule s'exécute en quelques secondes. Voir :func:`dry_run` et :func:`dry_budget`.
``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``, ``HF_DATASETS_OFFLINE``
    Variables de Hugging Face : l'une d'elles à ``1`` interdit le hub, pour les
    modèles comme pour les données. Seule :func:`hub_allowed` les lit ;
    :func:`forbid_hub` les pose (profil ``light``). ``HF_HUB_CACHE`` et
    ``HF_ENDPOINT`` : voir :func:`hub_cache_dir` et :func:`hub_endpoint`.
``JUPYTERHUB_SERVICE_PREFIX``
    Posée par JupyterHub (Binder) : chemin du serveur Jupyter, sous lequel
    jupyter-server-proxy relaie les ports locaux. Voir :func:`jupyterhub_prefix`.

C'est aussi le seul endroit qui décide du **périphérique** (:func:`default_device`,
:func:`model_device`) et de la **précision de calcul** : bfloat16 sur un processeur
qui le calcule en matériel (AVX-512-BF16 ou AMX), float32 sur les autres, où chaque
produit matriciel bf16 est émulé et environ cent fois plus lent ; sur GPU, bf16 si la
carte le calcule en matériel, fp16 sinon (T4), avec :func:`grad_scaler` pour entraîner.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

PROFILES = ("light", "full")

# Racine du dépôt quand le paquet est installé en mode éditable (code/atelier/).
REPO_ROOT = Path(__file__).resolve().parents[3]


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
            f"ATELIER_PROFILE={value!r} n'est pas un profil connu : "
            f"valeurs acceptées {', '.join(PROFILES)}."
        )
    return value


def profile_source() -> str:
    """Dit d'où vient le profil (variable d'environnement ou détection du GPU)."""
    if os.environ.get("ATELIER_PROFILE", "").strip():
        return "variable ATELIER_PROFILE"
    return "détection automatique (GPU CUDA présent)" if _cuda_available() else "défaut (pas de GPU)"


def _env_flag(var: str, meaning: str) -> bool:
    """Un drapeau oui/non lu dans l'environnement ; une valeur incomprise est une erreur, pas un « non »."""
    value = os.environ.get(var, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{var}={value!r} n'est pas compris : valeurs acceptées 1 ({meaning}) ou 0.")


def dry_run() -> bool:
    """Vrai pendant la répétition à blanc du profil ``full`` (``ATELIER_DRY_RUN=1``) : budgets réduits."""
    return _env_flag("ATELIER_DRY_RUN", "répétition à blanc")


def dry_budget(budget: dict, **dry) -> dict:
    """``budget``, ou, pendant la répétition à blanc (:func:`dry_run`), ``budget`` mis à jour par ``dry``.

    Les chapitres y passent leur plan du profil ``full`` : ``dry_budget(dict(epochs=10), epochs=1)``.
    """
    return {**budget, **dry} if dry_run() else dict(budget)


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


# ----------------------------------------------------------------------------
# Accès au hub Hugging Face
# ----------------------------------------------------------------------------
_TRUE = {"1", "true", "oui", "yes", "on"}
_FALSE = {"", "0", "false", "non", "no", "off"}
HUB_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def hub_allowed() -> bool:
    """Vrai si le hub Hugging Face peut être utilisé (modèles et données).

    Faux dès que l'une des variables :data:`HUB_OFFLINE_VARS` vaut ``1``
    (``true``, ``yes``, ``on``) : la même règle pour :mod:`atelier.assets.models`
    et :mod:`atelier.assets.data`.
    """
    return not any(os.environ.get(v, "").strip().lower() in _TRUE for v in HUB_OFFLINE_VARS)


def forbid_hub() -> None:
    """Interdit le hub (sans écraser un réglage explicite) : rien ne doit venir du réseau en profil light."""
    for var in HUB_OFFLINE_VARS:
        os.environ.setdefault(var, "1")


def hub_cache_dir() -> str | None:
    """Cache du hub imposé par ``HF_HUB_CACHE`` (``None`` : celui de ``huggingface_hub``)."""
    return os.environ.get("HF_HUB_CACHE", "").strip() or None


def hub_endpoint() -> str:
    """Adresse du hub (``HF_ENDPOINT``, sinon https://huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "").strip() or "https://huggingface.co"


def progress_disabled() -> bool:
    """Vrai quand ``TQDM_DISABLE`` coupe les barres de progression (builds et tests : ``make`` l'exporte)."""
    return os.environ.get("TQDM_DISABLE", "") not in ("", "0")


def jupyterhub_prefix() -> str | None:
    """Chemin du serveur Jupyter sous JupyterHub, comme sur Binder (``/user/…/``), ``None`` ailleurs."""
    value = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "").strip()
    return value or None


def secret(var: str) -> str:
    """Valeur (sans espaces autour) de la variable d'environnement ``var``, ``""`` si absente : clés d'API."""
    if not isinstance(var, str) or not var.strip():
        raise ValueError(f"var doit être le nom (non vide) d'une variable d'environnement ; reçu {var!r}.")
    return os.environ.get(var, "").strip()


# ----------------------------------------------------------------------------
# Précision de calcul et fils de calcul
# ----------------------------------------------------------------------------


def fp32_forced() -> bool:
    """Vrai si ``ATELIER_FP32`` impose le calcul en float32 sur CPU."""
    return _env_flag("ATELIER_FP32", "float32 imposé")


def cpu_native_bf16() -> bool:
    """Vrai si PyTorch signale un calcul bfloat16 matériel sur ce processeur (AVX-512-BF16 ou AMX).

    Les processeurs AVX2 (et AVX-512 sans l'extension BF16) émulent bf16 :
    chaque produit matriciel y est environ cent fois plus lent qu'en float32.
    """
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = (getattr(cpu, "_is_avx512_bf16_supported", None), getattr(cpu, "_is_amx_tile_supported", None))
    for check in checks:
        try:
            if check is not None and check():
                return True
        except (RuntimeError, AttributeError):  # pragma: no cover - PyTorch sans ces sondes
            continue
    return False


def default_device():
    """Le périphérique de calcul par défaut du livre : le GPU CUDA s'il y en a un, sinon le CPU (``torch.device``)."""
    import torch

    return torch.device("cuda" if _cuda_available() else "cpu")


def model_device(model):
    """Où vivent les poids de ``model`` (premier paramètre ou tampon ; CPU s'il n'en a aucun) : y placer ses entrées."""
    import torch

    first = next(model.parameters(), None)
    first = next(model.buffers(), None) if first is None else first
    return torch.device("cpu") if first is None else first.device


def to_device(batch, device) -> dict:
    """Le lot ``batch`` (dict ou BatchEncoding) sur ``device`` ; ce qui n'est pas un tenseur reste tel quel."""
    from collections.abc import Mapping

    import torch

    if not isinstance(batch, Mapping):
        raise TypeError(f"batch doit être un dictionnaire de tenseurs, reçu {type(batch).__name__}.")
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _device_type(device) -> str:
    import torch

    if device is None:
        return default_device().type
    if isinstance(device, torch.device):
        return device.type
    if isinstance(device, str) and device.strip():
        return torch.device(device.strip()).type
    raise TypeError(f"device doit être None, une chaîne (« cpu », « cuda ») ou un torch.device, reçu {device!r}.")


def gpu_native_bf16() -> bool:
    """Vrai si le GPU calcule bfloat16 en matériel (Ampere et après) ; faux sur un T4, qui l'émule, ou sans GPU."""
    import torch

    if not torch.cuda.is_available():
        return False
    try:  # sans ce paramètre, is_bf16_supported() répond oui sur un T4 (bf16 émulé)
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # pragma: no cover - PyTorch sans ce paramètre : pas d'émulation comptée
        return bool(torch.cuda.is_bf16_supported())


def compute_dtype(device=None):
    """Le type des calculs (entraînement et inférence) sur ``device`` (défaut : GPU s'il y en a un, sinon CPU).

    - GPU : ``torch.bfloat16`` si la carte le calcule en matériel (:func:`gpu_native_bf16`), sinon
      ``torch.float16`` (T4), à entraîner avec :func:`grad_scaler` ;
    - CPU : ``torch.bfloat16`` seulement si le processeur le calcule nativement (:func:`cpu_native_bf16`)
      et que ``ATELIER_FP32`` ne l'interdit pas ; ``torch.float32`` sinon.
    """
    import torch

    kind = _device_type(device)
    if kind == "cuda":
        return torch.bfloat16 if gpu_native_bf16() else torch.float16
    if kind == "cpu":
        return torch.bfloat16 if (cpu_native_bf16() and not fp32_forced()) else torch.float32
    return torch.float32


PRECISION_CHOICES = ("auto", "bf16", "fp16", "fp32")


def resolve_precision(precision: str = "auto", device=None):
    """Le ``torch.dtype`` d'une précision demandée (``auto`` : :func:`compute_dtype`, ``bf16``, ``fp16``, ``fp32``)
    sur ``device`` ; refusés : ``fp16`` sur CPU, ``bf16`` sur un GPU qui l'émule (T4)."""
    import torch

    if precision not in PRECISION_CHOICES:
        raise ValueError(f"Précision inconnue : {precision!r}. Valeurs acceptées : {', '.join(PRECISION_CHOICES)}.")
    kind = _device_type(device)
    if precision == "auto":
        return compute_dtype(kind)
    if precision == "fp16" and kind == "cpu":
        raise ValueError("fp16 demande un GPU : sur CPU, choisissez auto, bf16 ou fp32.")
    if precision == "bf16" and kind == "cuda" and not gpu_native_bf16():
        raise ValueError("Ce GPU n'a pas de bfloat16 matériel (T4 et cartes d'avant Ampere) : choisissez auto, fp16 ou fp32.")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def grad_scaler(device=None, enabled: bool = True, dtype=None):
    """``torch.amp.GradScaler`` pour ``device``, actif seulement si l'on y calcule en float16 (``dtype``, par défaut
    :func:`compute_dtype`) : perte multipliée avant la rétropropagation, gradients divisés avant le pas, sinon les
    petits gradients fp16 s'annulent. Inactif (il laisse tout passer) en bf16 ou float32 : les boucles s'en servent toujours."""
    import torch

    kind = _device_type(device)
    dtype = compute_dtype(kind) if dtype is None else dtype
    return torch.amp.GradScaler(kind, enabled=bool(enabled) and dtype == torch.float16)


def use_bf16(device=None) -> bool:
    """Vrai si les calculs sur ``device`` se font en bfloat16 (voir :func:`compute_dtype`)."""
    return precision_name(device) == "bf16"


def autocast(device=None, enabled: bool = True):
    """``torch.autocast`` à la précision du livre (en fp16, entraîner avec :func:`grad_scaler`), neutre en float32."""
    import contextlib

    import torch

    kind = _device_type(device)
    dtype = compute_dtype(kind)
    if not enabled or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(kind, dtype=dtype)


def precision_name(device=None) -> str:
    """``"bf16"``, ``"fp16"`` ou ``"fp32"`` : la précision de calcul choisie (tampon d'exécution)."""
    import torch

    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(compute_dtype(device), "fp32")


def precision_reason(device=None) -> str:
    """Pourquoi cette précision, en une phrase (affichée par :func:`atelier.runtime.book.setup`)."""
    kind = _device_type(device)
    name = precision_name(kind)
    if kind == "cuda":
        return f"{name} (GPU {'avec' if name == 'bf16' else 'sans'} bfloat16)"
    if fp32_forced():
        return "fp32 (imposé par ATELIER_FP32)"
    if name == "bf16":
        return "bf16 (processeur à bfloat16 natif)"
    return "fp32 (processeur sans bfloat16 natif)"


def num_threads() -> int:
    """Fils de calcul PyTorch du livre : ``ATELIER_THREADS``, sinon tous les cœurs disponibles."""
    value = os.environ.get("ATELIER_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"ATELIER_THREADS={value!r} : attendu un entier ≥ 1.")
        return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def apply_threads() -> int:
    """Règle PyTorch sur :func:`num_threads` fils (à rappeler après une bibliothèque qui les change, comme numba)."""
    import torch

    n = num_threads()
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int = 0) -> int:
    """Fixe les graines de ``random``, NumPy et PyTorch ; renvoie la graine."""
    from atelier.runtime.checks import check_int

    seed = check_int("seed (la graine)", seed, min=0, max=2**32 - 1)  # borne de NumPy
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
