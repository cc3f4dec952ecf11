"""Liens vers le glossaire à la première occurrence de chaque terme d'un chapitre.

``python -m tools.glossary check book/NN_slug.md`` liste les termes du
glossaire (``book/90_glossaire.md``, directives ``{glossary}``) qu'un chapitre
emploie dans sa prose sans jamais les lier ; ``link`` pose le lien
``{term}`…``` sur la première occurrence (forme exacte ou pluriel en -s/-x),
dans un paragraphe de prose (ni titre, ni code, ni mathématiques, ni lien
existant). Le résultat se relit : un terme employé dans un autre sens se
délie à la main.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from atelier.runtime.cli import Parser
from tools.typography import split_blocks, split_inline

REPO = Path(__file__).resolve().parents[1]
GLOSSARY = REPO / "book" / "90_glossaire.md"
# Mots du glossaire qui ont aussi un sens courant : jamais liés automatiquement (à lier à la main).
AMBIGUOUS = {"référence", "valeur", "clé", "requête", "précision", "rang", "lot", "étiquette", "poids", "perte",
             "couche", "graine", "paramètres", "entraînement", "génération", "implication", "contradiction", "neutre"}


def glossary_terms(path: Path = GLOSSARY) -> list[str]:
    """Les termes définis dans les directives ``{glossary}`` (les plus longs d'abord)."""
    terms, inside = [], False
    for line in path.read_text("utf-8").splitlines():
        if line.startswith(":::{glossary}"):
            inside = True
        elif line.startswith(":::"):
            inside = False
        elif inside and line and not line.startswith((" ", "\t")):
            terms.append(line.strip())
    return sorted(set(terms), key=lambda t: (-len(t), t))


def _pattern(term: str) -> re.Pattern:
    words = [re.escape(w) for w in term.split()]
    body = r"\s+".join(words)
    return re.compile(rf"(?<![\w\-{{`*]){body}(?P<plural>s|x)?(?![\w\-`}}*])", re.IGNORECASE)


def _linked(text: str) -> set[str]:
    found = set()
    for m in re.finditer(r"\{term\}`([^`<]*?)(?:\s*<([^>]+)>)?`", text):
        found.add((m[2] or m[1]).strip().lower())
    return found


def link(text: str, terms: list[str]) -> tuple[str, list[str]]:
    """``text`` avec un lien sur la première occurrence de chaque terme non encore lié ; et ces termes."""
    done = _linked(text)
    added = []
    for term in terms:
        if term.lower() in done or term.lower() in AMBIGUOUS:
            continue
        pattern = _pattern(term)
        pos = 0
        out_text = None
        for chunk in split_blocks(text):
            start = text.find(chunk.text, pos)
            pos = start + len(chunk.text)
            if chunk.kind != "prose":
                continue
            offset = start
            for piece, kind in split_inline(chunk.text):
                if kind is None:
                    m = next((m for m in pattern.finditer(piece) if not _in_emphasis_or_link(piece, m.start())
                              and not _skipped_line(text, offset + m.start())), None)
                    if m:
                        a, b = offset + m.start(), offset + m.end()
                        shown = " ".join(text[a:b].split())  # un rôle sur une seule ligne
                        role = f"{{term}}`{shown}`" if shown.lower() == term.lower() else f"{{term}}`{shown} <{term}>`"
                        out_text = text[:a] + role + text[b:]
                        break
                offset += len(piece)
            if out_text is not None:
                break
        if out_text is not None:
            text = out_text
            done.add(term.lower())
            added.append(term)
    return text, added


def _skipped_line(text: str, pos: int) -> bool:
    """Titres, tableaux, options et commentaires MyST : pas de lien."""
    line = text[text.rfind("\n", 0, pos) + 1: pos].lstrip()
    return line.startswith(("#", "|", ":", "%", "```", "$$"))


def _in_emphasis_or_link(piece: str, i: int) -> bool:
    before = piece[:i]
    return before.count("[") > before.count("]") or before.count("**") % 2 == 1


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m tools.glossary", description="Liens vers le glossaire, à la première occurrence.")
    parser.add_argument("action", choices=["check", "link"])
    parser.add_argument("pages", nargs="+", type=Path)
    args = parser.parse_args(argv)
    terms = glossary_terms()
    missing = 0
    for page in args.pages:
        text = page.read_text("utf-8")
        new, added = link(text, terms)
        if args.action == "link" and added:
            page.write_text(new, "utf-8")
        missing += len(added) if args.action == "check" else 0
        verb = "liés" if args.action == "link" else "sans lien"
        print(f"{page.name} : {len(added)} termes {verb}{' : ' + ', '.join(added) if added else ''}")
    return 1 if missing else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
