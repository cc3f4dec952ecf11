"""Recopier dans les chapitres le code des modules qu'ils montrent (cellules ``# atelier.<module> :``).

``python -m tools.shown`` réécrit, dans chaque ``book/NN_*.md``, chaque ``def``/``class``
de premier niveau d'une cellule marquée avec le texte actuel du module (même
indentation que dans la cellule) ; puis ``python -m tools.build notebooks``
régénère les ``.ipynb``. ``tests/test_shown_code.py`` vérifie le résultat ; cet
outil évite seulement de recopier à la main après une modification du module.
Outillage du livre : pas installé avec le paquet ``atelier``.
"""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from pathlib import Path

from tools import build

MARK = re.compile(r"^#\s*(atelier(?:\.\w+)+)\s+:")
FENCE = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.S | re.M)


def _spans(source: str) -> dict[str, tuple[int, int]]:
    """(première ligne, dernière ligne), à partir de 0, de chaque ``def``/``class`` de premier niveau."""
    spans = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            spans[node.name] = (first - 1, node.end_lineno - 1)
    return spans


def _module_text(module: str) -> dict[str, str] | None:
    path = build.module_file(module)
    if path is None:
        return None
    source = path.read_text("utf-8")
    lines = source.splitlines()
    return {name: textwrap.dedent("\n".join(lines[a:b + 1])) for name, (a, b) in _spans(source).items()}


def sync_cell(code: str) -> str:
    """Le code d'une cellule marquée, ses définitions remplacées par celles du module."""
    first = next((line for line in code.split("\n") if line.strip() and not line.startswith(":")), "")
    match = MARK.match(first)
    if not match:
        return code
    reference = _module_text(match.group(1))
    if reference is None:
        return code
    # Les lignes de la cellule qui ne sont pas du Python (« :tags: », %magie) restent telles quelles.
    python = "\n".join("" if line.lstrip().startswith(("%", "!", ":")) else line for line in code.split("\n"))
    lines = code.split("\n")
    for name, (a, b) in sorted(_spans(python).items(), key=lambda kv: -kv[1][0]):
        if name in reference:
            indent = re.match(r"\s*", lines[a]).group(0)
            lines[a:b + 1] = [indent + line if line else line for line in reference[name].split("\n")]
    return "\n".join(lines)


def sync_chapter(md: Path) -> bool:
    """Réécrit ``md`` si l'une de ses cellules marquées a changé ; renvoie True dans ce cas."""
    text = md.read_text("utf-8")
    new = FENCE.sub(lambda m: m.group(0).replace(m.group(1), sync_cell(m.group(1)), 1), text)
    if new != text:
        md.write_text(new, "utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    changed = [md.name for md in build.chapter_sources() if sync_chapter(md)]
    print("Chapitres mis à jour : " + (", ".join(changed) if changed else "aucun"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
