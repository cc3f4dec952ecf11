"""Publier une version du livre : numéro, commit de version, cellules d'installation, étiquette git.

``make release VERSION=0.2.0`` (ou ``python -m tools.release 0.2.0``), arbre de
travail propre :

1. écrit la version dans ``pyproject.toml``, committe (« Version 0.2.0 ») et
   pose l'étiquette ``v0.2.0`` sur ce commit ;
2. fait installer **ce commit** (``@<empreinte complète>``) par la cellule
   d'installation de ``CONTRIBUTING.md``, la recopie en tête de chaque
   chapitre, régénère les notebooks et committe.

La cellule désigne un commit, pas une étiquette : un commit est immuable et
voyage avec l'historique (un clone, une fusion le gardent), alors qu'une
étiquette peut rester sur la machine qui l'a posée. ``tests/test_launch.py``
vérifie que ce commit est bien dans l'historique du dépôt et qu'il porte la
version annoncée par ``pyproject.toml``. Il reste à pousser : ``git push --follow-tags``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from atelier.runtime.cli import Parser
from tools import build, site

REPO = Path(__file__).resolve().parents[1]
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_REF = re.compile(r"(latelier-des-llm/latelier-des-llm@)(?:v\d+\.\d+\.\d+|[0-9a-f]{40})\b")
_SHA = re.compile(r"^[0-9a-f]{40}$")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def set_version(version: str, root: Path = REPO) -> list[Path]:
    """Écrit ``version`` dans pyproject.toml ; renvoie les fichiers changés."""
    if not _VERSION.match(version):
        raise ValueError(f"version doit s'écrire MAJEUR.MINEUR.CORRECTIF (ex.\u00a00.2.0)\u00a0; reçu {version!r}.")
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text("utf-8")
    new = re.sub(r'(?m)^version = "[^"]+"', f'version = "{version}"', text, count=1)
    if new != text:
        pyproject.write_text(new, "utf-8")
        return [pyproject]
    return []


def set_install_ref(ref: str, root: Path = REPO) -> list[Path]:
    """Fait installer le commit ``ref`` (empreinte complète) par la cellule d'installation, partout ; renvoie les fichiers changés."""
    if not isinstance(ref, str) or not _SHA.match(ref):
        raise ValueError(f"ref doit être l'empreinte complète d'un commit (40 chiffres hexadécimaux)\u00a0; reçu {ref!r}.")
    changed = []
    contributing = root / "CONTRIBUTING.md"
    ctext = contributing.read_text("utf-8")
    cnew = _REF.sub(rf"\g<1>{ref}", ctext)
    if cnew == ctext and f"@{ref}" not in ctext:
        raise ValueError("CONTRIBUTING.md\u00a0: la cellule d'installation ne désigne ni étiquette ni commit du dépôt.")
    if cnew != ctext:
        contributing.write_text(cnew, "utf-8")
        changed.append(contributing)
    for md in build.chapter_sources(root / "book"):
        if site.sync_install_cell(md, root):
            changed.append(md)
    build.write_notebooks(root / "book")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m tools.release", description="Publier une version : numéro, commit, étiquette.")
    parser.add_argument("version", help="MAJEUR.MINEUR.CORRECTIF, par exemple 0.2.0")
    args = parser.parse_args(argv)
    if _git("status", "--porcelain"):
        print("[atelier] Arbre de travail modifié : committez ou rangez d'abord vos changements.", file=sys.stderr)
        return 1
    tag = f"v{args.version}"
    if _git("tag", "-l", tag):
        print(f"[atelier] L'étiquette {tag} existe déjà.", file=sys.stderr)
        return 1
    try:
        set_version(args.version)
    except ValueError as exc:
        print(f"[atelier] {exc}", file=sys.stderr)
        return 1
    _git("add", "-A")
    _git("commit", "-q", "-m", f"Version {args.version}")
    _git("tag", "-a", tag, "-m", f"L'atelier des LLM {args.version}")
    release = _git("rev-parse", "HEAD")
    set_install_ref(release)
    _git("add", "-A")
    _git("commit", "-q", "-m", f"Cellules d'installation : version {args.version} (commit {release[:10]})")
    print(f"[atelier] Version {args.version} : commit {release[:10]}, étiquette {tag} ; les cellules installent ce commit. "
          "Publier : git push --follow-tags")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
