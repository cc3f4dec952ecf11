"""Les sorties exécutées des chapitres, lues comme la prose : nombres à la française, termes du glossaire.

Ce que la prose respecte (``tools.typography``), les sorties des cellules le
doivent aussi : un lecteur lit « 0.809 » ou « 24.3% » dans un tableau comme une
faute. Ce module extrait le texte des sorties (d'un notebook exécuté, ou des
pages HTML construites) et y signale :

- un nombre décimal écrit avec un point (« 0.809 », « 5.0 s ») ;
- un pourcentage collé (« 24.3% », « 12% ») ;
- des milliers séparés par des virgules (« 1,234,567 ») ;
- « nan » affiché au lieu d'une valeur manquante (« — ») ;
- un nombre négatif écrit avec un trait d'union (« -3,1 » au lieu de « −3,1 ») ;
- les traductions à éviter du glossaire (mêmes règles que la prose).

Ne sont pas signalés : les numéros de version (« 2.13.0 »), l'écriture
scientifique (« 1e-05 », « 2.5e-3 »), les paires ``clé=valeur`` des
représentations de modules (``p=0.1``), les identifiants (``v0.1``,
``gemma-3``). Une cellule dont la sortie *est* du code (une représentation de
module, un extrait de configuration) porte le tag ``code-output`` et n'est pas
lue.

Usage : ``python -m tools.outputs FICHIER.ipynb|DOSSIER_HTML…`` (code de sortie
1 s'il reste une faute).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.typography import TERM_RULES
from atelier.runtime.cli import Parser

SKIP_TAG = "code-output"

_RULES: tuple[tuple[str, re.Pattern], ...] = (
    ("nombre décimal avec un point (écrire une virgule, via atelier.runtime.fmt)",
     re.compile(r"(?<![\w.,/:=+\-])-?\d+\.\d+(?![\w.]|\.\d)")),
    ("pourcentage collé (écrire « 12,5 % » avec une espace fine, via fmt.pourcent)",
     re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?%")),
    ("milliers séparés par des virgules (écrire « 1 234 567 », via fmt.nombre)",
     re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3}){2,}(?![\d,])")),
    ("« nan » affiché (une valeur manquante s'écrit « — »)", re.compile(r"(?<![\w-])nan(?![\w-])", re.IGNORECASE)),
    ("trait d'union pour un nombre négatif (écrire le signe moins « − », via fmt.nombre)",
     re.compile(r"(?<![\w.,/:=+\-])-\d+,\d+")),
)
# Un numéro de licence ou de version n'est pas un nombre décimal : « CC BY-SA 4.0 », « Apache-2.0 », « Python 3.11 ».
_VERSION_BEFORE = re.compile(r"(?:CC[ -]BY(?:-[A-Z]{2})*|Apache-|GPL-|Python|version|CUDA|v) ?$", re.IGNORECASE)


@dataclass(frozen=True)
class OutputIssue:
    where: str  # « chapitre, cellule n » ou « page.html, sortie n »
    found: str
    message: str

    def __str__(self) -> str:
        return f"{self.where} : « {self.found} » — {self.message}"


def check_text(text: str, where: str) -> list[OutputIssue]:
    """Les fautes de ``text`` (le texte d'une sortie)."""
    issues = []
    for message, pattern in _RULES:
        for m in pattern.finditer(text):
            before = text[max(0, m.start() - 1): m.start()]
            if message.startswith("nombre") and _VERSION_BEFORE.search(text[max(0, m.start() - 12): m.start()]):
                continue
            issues.append(OutputIssue(where, m.group(), message))
    for rule in TERM_RULES:
        if rule.scope != "prose":
            continue
        for m in rule.regex().finditer(text):
            if rule.exempt_if_sentence_has and re.search(rule.exempt_if_sentence_has, text, re.IGNORECASE):
                continue
            issues.append(OutputIssue(where, " ".join(m.group().split()), f"à éviter ; écrire {rule.use}"))
    return issues


def _html_text(html: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style"]):
        tag.decompose()
    return soup.get_text(" ")


def notebook_texts(path: Path) -> list[tuple[str, str]]:
    """``(où, texte)`` pour chaque sortie lisible d'un notebook exécuté (texte brut, HTML, flux)."""
    nb = json.loads(Path(path).read_text("utf-8"))
    out = []
    number = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        number += 1
        if SKIP_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text = "".join(output.get("text", ""))
            elif output.get("output_type") in ("execute_result", "display_data"):
                data = output.get("data", {})
                if "text/html" in data:
                    text = _html_text("".join(data["text/html"]))
                elif "text/markdown" in data:
                    text = "".join(data["text/markdown"])
                else:
                    text = "".join(data.get("text/plain", ""))
            else:
                continue  # les erreurs attendues (raises-exception) montrent une trace Python
            out.append((f"{Path(path).name}, cellule {number}", text))
    return out


def html_texts(path: Path) -> list[tuple[str, str]]:
    """``(où, texte)`` pour chaque zone de sortie d'une page HTML construite par myst-nb."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(Path(path).read_text("utf-8"), "html.parser")
    out = []
    for i, cell in enumerate(soup.select("div.cell"), start=1):
        if f"tag_{SKIP_TAG}" in cell.get("class", []) or "tag_raises-exception" in cell.get("class", []):
            continue
        for output in cell.select("div.cell_output"):
            for tag in output(["script", "style"]):
                tag.decompose()
            out.append((f"{Path(path).name}, cellule {i}", output.get_text(" ")))
    return out


def check_paths(paths: list[Path]) -> list[OutputIssue]:
    issues = []
    for path in paths:
        files = sorted(path.glob("[0-9][0-9]_*.html")) + sorted(path.glob("[0-9][0-9]_*.ipynb")) if path.is_dir() \
            else [path]
        if not files:
            raise ValueError(f"{path} : aucune page de chapitre (NN_slug.html ou .ipynb) à lire.")
        for f in files:
            texts = html_texts(f) if f.suffix == ".html" else notebook_texts(f)
            for where, text in texts:
                issues.extend(check_text(text, where))
    return issues


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m tools.outputs",
                                     description="Nombres et termes des sorties exécutées des chapitres.")
    parser.add_argument("paths", nargs="+", type=Path, help="notebooks exécutés ou dossier du site construit")
    parser.add_argument("--count", action="store_true", help="n'afficher que le nombre de fautes par fichier")
    args = parser.parse_args(argv)
    issues = check_paths(args.paths)
    if args.count:
        per: dict[str, int] = {}
        for i in issues:
            per[i.where.split(",")[0]] = per.get(i.where.split(",")[0], 0) + 1
        for name, n in sorted(per.items()):
            print(f"{name} : {n}")
    else:
        for i in issues:
            print(i)
    print(f"{len(issues)} faute(s) dans les sorties.")
    return 1 if issues else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
