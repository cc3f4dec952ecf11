"""Publier une version du livre : numéro, cellules d'installation, commit et étiquette git.

``make release VERSION=0.2.0`` (ou ``python -m tools.release 0.2.0``), arbre de
travail propre :

1. écrit la version dans ``pyproject.toml`` ;
2. fait installer ``@v0.2.0`` par la cellule d'installation de ``CONTRIBUTING.md``
   et la recopie en tête de chaque chapitre, puis régénère les notebooks ;
3. committe (« Version 0.2.0 ») et crée l'étiquette ``v0.2.0`` sur ce commit.

La cellule d'un chapitre n'installe donc jamais qu'une étiquette qui existe :
``tests/test_launch.py`` le vérifie. Il reste à pousser : ``git push --follow-tags``.
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
_REF = re.compile(r"(latelier-des-llm/latelier-des-llm@)v\d+\.\d+\.\d+")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def set_version(version: str, root: Path = REPO) -> list[Path]:
    """Écrit ``version`` dans pyproject.toml et dans la cellule d'installation ; renvoie les fichiers changés."""
    if not _VERSION.match(version):
        raise ValueError(f"version doit s'écrire MAJEUR.MINEUR.CORRECTIF (ex. 0.2.0) ; reçu {version!r}.")
    changed = []
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text("utf-8")
    new = re.sub(r'(?m)^version = "[^"]+"', f'version = "{version}"', text, count=1)
    contributing = root / "CONTRIBUTING.md"
    ctext = contributing.read_text("utf-8")
    cnew = _REF.sub(rf"\g<1>v{version}", ctext)
    if cnew == ctext and f"@v{version}" not in ctext:
        raise ValueError("CONTRIBUTING.md : la cellule d'installation ne désigne aucune étiquette vX.Y.Z.")
    for path, old, value in ((pyproject, text, new), (contributing, ctext, cnew)):
        if value != old:
            path.write_text(value, "utf-8")
            changed.append(path)
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
    print(f"[atelier] Version {args.version} : commit {_git('rev-parse', '--short', 'HEAD')}, étiquette {tag}. "
          "Publier : git push --follow-tags")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
