"""Typographie française et terminologie des pages du livre : vérifier, corriger.

Utilisé pour toutes les pages du livre (``book/*.md``) par leurs auteurs et par
``tests/test_typography.py`` ; les règles de terminologie sont celles du
glossaire (``book/90_glossaire.md``).

Règles de typographie (corrigées automatiquement par ``fix``) :

- espace insécable (U+00A0, ou fine U+202F) avant « : ; ! ? » ;
- espace insécable à l'intérieur des guillemets « ».

Seule la prose est touchée : jamais l'en-tête YAML, les cellules de code, les
blocs de code, le code en ligne, les mathématiques, les URL, les cibles de
liens, le HTML, les rôles MyST ni l'en-tête et les options des directives.
Le contenu des directives de prose (``{note}``, ``{admonition}``…) est de la
prose. Une zone peut être exclue de toutes les vérifications entre
``% typographie: off`` et ``% typographie: on``, ou de celle des termes seulement
entre ``% glossaire: off`` et ``% glossaire: on`` (commentaires MyST, invisibles
sur le site ; sans ``on``, jusqu'à la fin de la page).

Terminologie (signalée, jamais corrigée automatiquement) : :data:`TERM_RULES`,
par exemple « précision » employé pour *accuracy* (à écrire « exactitude »).

Usage : ``python -m tools.typography {check,fix} FICHIERS.md…``
"""

from __future__ import annotations

import argparse
import bisect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from atelier.runtime.cli import Parser

NBSP = "\u00a0"
NNBSP = "\u202f"
NB_SPACES = NBSP + NNBSP

# --- découpage d'une page MyST en prose / code / le reste -----------------------

PROSE_DIRECTIVES = {
    "note", "warning", "tip", "hint", "important", "caution", "attention", "danger", "error",
    "seealso", "admonition", "margin", "sidebar", "dropdown", "topic", "epigraph", "pull-quote",
    "highlights", "card", "grid-item-card", "tab-item", "tab-set", "grid", "grid-item", "div",
    "container", "figure", "table", "list-table", "glossary", "rubric", "exercise", "solution",
}
CODE_DIRECTIVES = {"code-cell", "code-block", "code", "sourcecode", "ipython"}
NO_PROSE_ARGUMENT = {"figure", "div", "container", "grid", "tab-set"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>[^\n]*)\n?$")
_DIRECTIVE = re.compile(r"^\{(?P<name>[^}\s]+)\}(?P<sep>\s*)(?P<arg>.*?)\s*$")
_OPTION = re.compile(r"^[ \t]*:[\w-]+:([ \t]|$)")
_LINK_DEF = re.compile(r"^[ \t]*\[[^\]^][^\]]*\]:[ \t]*\S")
_FOOTNOTE_DEF = re.compile(r"^[ \t]*\[\^[^\]]+\]:")
_TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t]*:?-{2,}")
_HTML_BLOCK = re.compile(r"^[ \t]*<(?:!--|/?[A-Za-z])")

_INLINE = re.compile(
    r"(?P<role>\{[\w:.+-]+\}(?P<bt1>`+)[\s\S]+?(?P=bt1))"
    r"|(?P<code>(?P<bt2>`+)[\s\S]+?(?P=bt2))"
    r"|(?P<dmath>\$\$[\s\S]+?\$\$)"
    r"|(?P<math>(?<![\\$])\$(?![\s$])(?:\\.|[^$\n\\])+?(?<![\s\\])\$)"
    r"|(?P<pmath>\\\([\s\S]+?\\\)|\\\[[\s\S]+?\\\])"
    r"|(?P<comment><!--[\s\S]*?-->)"
    r"|(?P<html></?[A-Za-z][^>\n]*>|<(?:https?|mailto|ftp):[^>\s]*>)"
    r"|(?P<target>(?<=\])\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"]*\")?\))"
    r"|(?P<url>(?:https?://|www\.)[^\s<>()\[\]]*[^\s<>()\[\].,;:!?»\"'])"
    r"|(?P<email>[\w.+-]+@[\w-]+\.[\w.-]*\w)"
    r"|(?P<subst>\{\{[\s\S]*?\}\})"
    r"|(?P<entity>&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z]\w*);)"
)


@dataclass
class Chunk:
    text: str
    kind: str  # "prose", "code" (cellules et blocs de code) ou "other" (à ne pas toucher)


def _closes(line: str, char: str, length: int) -> bool:
    m = _FENCE.match(line)
    return bool(m and m["fence"][0] == char and len(m["fence"]) >= length and not m["info"].strip())


def split_blocks(text: str) -> list[Chunk]:
    """Découpe une page MyST en morceaux de prose, de code et d'autre chose (même texte, même ordre)."""
    lines = text.splitlines(keepends=True)
    chunks: list[Chunk] = []
    stack: list[tuple[str, int, str]] = []  # (caractère, longueur, genre) des blocs clôturés ouverts
    i, options = 0, False

    def emit(s: str, kind: str) -> None:
        if chunks and chunks[-1].kind == kind:
            chunks[-1].text += s
        else:
            chunks.append(Chunk(s, kind))

    def until(pred, start: int) -> int:
        j = start
        while j < len(lines) and not pred(lines[j]):
            j += 1
        return min(j, len(lines) - 1)

    if lines and lines[0].strip() == "---":  # en-tête YAML (jupytext, kernelspec)
        end = until(lambda s: s.strip() == "---", 1)
        emit("".join(lines[: end + 1]), "other")
        i = end + 1
    while i < len(lines):
        line = lines[i]
        if stack and stack[-1][2] != "prose":
            char, length, kind = stack[-1]
            if _closes(line, char, length):
                stack.pop()
                emit(line, "other")
            else:
                emit(line, kind)
            i += 1
            continue
        if stack and _closes(line, stack[-1][0], stack[-1][1]):
            stack.pop()
            emit(line, "other")
            options = False
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence and (fence["fence"][0] != "`" or "`" not in fence["info"]):
            info = fence["info"].strip()
            directive = _DIRECTIVE.match(info)
            char, length = fence["fence"][0], len(fence["fence"])
            if directive and directive["name"] in PROSE_DIRECTIVES:
                stack.append((char, length, "prose"))
                arg = directive["arg"]
                if arg and directive["name"] not in NO_PROSE_ARGUMENT:
                    cut = line.index(arg, len(fence["indent"]) + len(fence["fence"]))
                    emit(line[:cut], "other")
                    emit(line[cut:], "prose")
                else:
                    emit(line, "other")
                options = True
            else:
                name = directive["name"] if directive else None
                kind = "code" if name is None or name in CODE_DIRECTIVES else "other"
                stack.append((char, length, kind))
                emit(line, kind if name is None else "other")
                if name is None and char == ":":  # ::: sans directive : pas un bloc de code
                    stack[-1] = (char, length, "other")
            i += 1
            continue
        stripped = line.strip()
        if options and stripped == "---":  # options des directives en YAML
            end = until(lambda s: s.strip() == "---", i + 1)
            emit("".join(lines[i: end + 1]), "other")
            i, options = end + 1, False
            continue
        if options and _OPTION.match(line):
            emit(line, "other")
            i += 1
            continue
        options = False
        if stripped.lower().replace(" ", "") == "%typographie:off":
            end = until(lambda s: s.strip().lower().replace(" ", "") == "%typographie:on", i + 1)
            emit("".join(lines[i: end + 1]), "other")
            i = end + 1
            continue
        if stripped.startswith("$$"):
            end = i if stripped.count("$$") >= 2 else until(lambda s: "$$" in s, i + 1)
            emit("".join(lines[i: end + 1]), "other")
            i = end + 1
            continue
        env = re.match(r"\\begin\{([^}]+)\}", stripped)
        if env:
            end = until(lambda s, e=env[1]: f"\\end{{{e}}}" in s, i)
            emit("".join(lines[i: end + 1]), "other")
            i = end + 1
            continue
        if stripped.startswith("<!--"):
            end = until(lambda s: "-->" in s, i)
            emit("".join(lines[i: end + 1]), "other")
            i = end + 1
            continue
        if (
            line.startswith("%") or stripped.startswith("+++") or re.match(r"^\([^)\s]+\)=\s*$", stripped)
            or _LINK_DEF.match(line) or _TABLE_RULE.match(line) or _HTML_BLOCK.match(line)
        ):
            emit(line, "other")
            i += 1
            continue
        foot = _FOOTNOTE_DEF.match(line)
        if foot:
            emit(line[: foot.end()], "other")
            emit(line[foot.end():], "prose")
            i += 1
            continue
        emit(line, "prose")
        i += 1
    return chunks


def split_inline(prose: str) -> list[tuple[str, str | None]]:
    """Découpe de la prose : ``(texte, None)`` pour la prose, ``(texte, genre)`` pour le reste."""
    out: list[tuple[str, str | None]] = []
    pos = 0
    for m in _INLINE.finditer(prose):
        if m.start() > pos:
            out.append((prose[pos: m.start()], None))
        out.append((m.group(), m.lastgroup if m.lastgroup not in {"bt1", "bt2"} else "code"))
        pos = m.end()
    if pos < len(prose):
        out.append((prose[pos:], None))
    return out


# --- typographie ------------------------------------------------------------------

@dataclass(frozen=True)
class Issue:
    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class _Masked:
    """La page où chaque morceau protégé est remplacé par un seul caractère d'usage privé."""

    BASE = 0xF0000

    def __init__(self, text: str):
        self.protected: list[str] = []
        self.nb_spaces = NB_SPACES  # plus les entités HTML d'espace insécable (&nbsp;…), masquées
        self.starts: list[int] = []  # (début masqué, début original) des morceaux de prose
        self.origins: list[int] = []
        parts: list[str] = []
        masked_len, orig = 0, 0

        def protect(s: str) -> None:
            nonlocal masked_len
            body, tail = (s[:-1], "\n") if s.endswith("\n") else (s, "")
            parts.append(chr(self.BASE + len(self.protected)) + tail)
            self.protected.append(body)
            masked_len += 1 + len(tail)

        for chunk in split_blocks(text):
            if chunk.kind != "prose":
                protect(chunk.text)
                orig += len(chunk.text)
                continue
            for piece, kind in split_inline(chunk.text):
                if kind is None:
                    self.starts.append(masked_len)
                    self.origins.append(orig)
                    parts.append(piece)
                    masked_len += len(piece)
                else:
                    if kind == "entity" and piece.lower() in _NB_ENTITIES:
                        self.nb_spaces += chr(self.BASE + len(self.protected))
                    protect(piece)
                orig += len(piece)
        self.text = "".join(parts)

    def origin(self, pos: int) -> int:
        k = max(bisect.bisect_right(self.starts, pos) - 1, 0)
        return self.origins[k] + pos - self.starts[k] if self.starts else 0

    def unmask(self, s: str) -> str:
        return re.sub("[\U000f0000-\U000ffffd]", lambda m: self.protected[ord(m.group()) - self.BASE], s)


_NB_ENTITIES = {"&nbsp;", "&#160;", "&#xa0;", "&#8239;", "&#x202f;"}
_HIGH = ";:!?"
_AFTER_PUNCT = set(" \t\n*_)]}»\"'’….,;:!?")
_NO_SPACE_AFTER = set("([{|/\\«\"'`’")
_BLOCK_START = re.compile(r"^[ \t]*(?:[-*+][ \t]|\d+[.)][ \t]|#|\||>|\n|$|[\U000f0000-\U000ffffd])")
_NOT_PROSE_LINE = re.compile(r"^[ \t]*(?:#|\||$)|^[\s\U000f0000-\U000ffffd]*$")


def _edits(m: str, nb: str = NB_SPACES) -> list[tuple[int, int, str | None, int, str]]:
    """Corrections ``(début, fin, remplacement ou None, position signalée, message)`` du texte masqué."""
    edits = []

    def join_previous(i: int, mark: str):
        k = m.rfind("\n", 0, i)
        line_start = m.rfind("\n", 0, k) + 1
        prev_line = m[line_start:k]
        if k <= 0 or _NOT_PROSE_LINE.match(prev_line):
            return (i, i, None, i, f"« {mark} » en début de ligne : le rejeter en fin de ligne précédente")
        start = line_start + len(prev_line.rstrip(" \t"))
        return (start, i, NBSP, i, f"« {mark} » en début de ligne : espace insécable attendue, sur la ligne précédente")

    for match in re.finditer(r"[;:!?]", m):
        i, ch = match.start(), match.group()
        nxt = m[i + 1] if i + 1 < len(m) else "\n"
        prev = m[i - 1] if i else "\n"
        if nxt not in _AFTER_PUNCT or prev in nb or prev in _HIGH or prev in _NO_SPACE_AFTER:
            continue
        if prev in " \t":
            j = i
            while j and m[j - 1] in " \t":
                j -= 1
            if j == 0 or m[j - 1] == "\n":
                if ch != ":":  # « : » en début de ligne : liste de définitions MyST
                    edits.append(join_previous(i, ch))
                continue
            edits.append((j, i, NBSP, i, f"espace ordinaire avant « {ch} » : espace insécable attendue"))
        elif prev == "\n":
            if ch != ":":
                edits.append(join_previous(i, ch))
        else:
            edits.append((i, i, NBSP, i, f"espace insécable manquante avant « {ch} »"))
    for match in re.finditer("«", m):
        i = match.start()
        j = i + 1
        while j < len(m) and m[j] in " \t":
            j += 1
        if j < len(m) and m[j] in nb:
            continue
        if j >= len(m) or m[j] == "\n":
            k = j + 1
            while k < len(m) and m[k] in " \t":
                k += 1
            if j >= len(m) or _BLOCK_START.match(m[j + 1:]):
                edits.append((i, i, None, i, "« en fin de ligne : le rejeter au début de la ligne suivante"))
            else:
                edits.append((i + 1, k, NBSP, i, "« en fin de ligne : espace insécable attendue après «"))
        elif j > i + 1:
            edits.append((i + 1, j, NBSP, i, "espace ordinaire après « : espace insécable attendue"))
        else:
            edits.append((i + 1, i + 1, NBSP, i, "espace insécable manquante après «"))
    for match in re.finditer("»", m):
        i = match.start()
        j = i
        while j and m[j - 1] in " \t":
            j -= 1
        if j and m[j - 1] in nb:
            continue
        if j == 0 or m[j - 1] == "\n":
            edits.append(join_previous(i, "»"))
        elif j < i:
            edits.append((j, i, NBSP, i, "espace ordinaire avant » : espace insécable attendue"))
        else:
            edits.append((i, i, NBSP, i, "espace insécable manquante avant »"))
    return sorted(edits)


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def check_typography(text: str, path: str = "<texte>") -> list[Issue]:
    """Écarts à la typographie française dans la prose d'une page MyST."""
    masked = _Masked(text)
    issues = []
    for _, _, _, at, message in _edits(masked.text, masked.nb_spaces):
        line, col = _line_col(text, masked.origin(at))
        issues.append(Issue(path, line, col, message))
    return issues


def fix_typography(text: str) -> str:
    """Corrige la typographie de la prose (idempotent) ; le code et le balisage restent intacts."""
    for _ in range(4):
        masked = _Masked(text)
        out, last_end = [], len(masked.text)
        applied = False
        for start, end, repl, _, _ in reversed(_edits(masked.text, masked.nb_spaces)):
            if repl is None or end > last_end:
                continue
            out.append(masked.text[end:last_end])
            out.append(repl)
            last_end = start
            applied = True
        out.append(masked.text[:last_end])
        new = masked.unmask("".join(reversed(out)))
        if not applied or new == text:
            return new
        text = new
    return text


# --- terminologie (règles du glossaire) -------------------------------------------

@dataclass(frozen=True)
class TermRule:
    """Une traduction à éviter : motif, forme signalée, forme à écrire, et où la chercher."""

    pattern: str
    avoid: str
    use: str
    scope: str = "prose"  # « prose » ou « code » (chaînes des cellules de code)
    exempt_if_sentence_has: str | None = None
    exempt_if_line_has: str | None = None  # par exemple le titre du chapitre (ligne « # … »)

    def regex(self) -> re.Pattern:
        return re.compile(self.pattern, re.IGNORECASE)


# Une phrase qui parle de rappel (precision/recall) ou de précision numérique
# (bits, flottants, bf16…) emploie « précision » à bon droit.
_PRECISION_OK = (
    r"\brappel\b|\bprecision\b|précision moyenne|précision@|\bbits?\b|\bbf16\b|\bfp(?:8|16|32)\b|"
    r"\bfloat\d*\b|flottant|numérique|\bnf4\b|\bint[48]\b|demi-précision|simple précision|"
    r"double précision|précision mixte|quantifi|mantisse"
)

TERM_RULES: tuple[TermRule, ...] = (
    TermRule(r"\bprécisions?\s+(?:de\s+(?:la\s+)?classification|globales?|top[- ]?\d|"
             r"du\s+(?:modèle|classifieur|classificateur)|"
             r"sur\s+(?:le|la|les|l['’])\s*(?:jeu|ensemble|test|validation|dev|corpus|données))",
             "« précision de classification », « précision du modèle », « précision globale », "
             "« précision sur le jeu de test »", "« exactitude »", exempt_if_sentence_has=_PRECISION_OK),
    TermRule(r"\btaux\s+de\s+précision\b", "« taux de précision »", "« exactitude »",
             exempt_if_sentence_has=_PRECISION_OK),
    TermRule(r"\bprécisions?\s*(?:\(|:|=|de|d['’]environ|est\s+de|atteint|passe\s+(?:de|à))?\s*"
             r"\d+(?:[.,]\d+)?\s?[\u00a0\u202f]?%",
             "« précision de 85 % » (un score en pourcentage)", "« exactitude de 85 % »",
             exempt_if_sentence_has=_PRECISION_OK),
    TermRule(r"\bprécision\b[^.\n]{0,40}\baccuracy\b|\baccuracy\b[^.\n]{0,40}\bprécision\b",
             "« précision (accuracy) »", "« exactitude (accuracy) »",
             exempt_if_sentence_has=r"\brappel\b|\bprecision\b"),
    TermRule(r"""['"]?\baccuracy\b['"]?\s*[:=]\s*['"][^'"\n]*précision"""
             r"""|['"][^'"\n]*précision[^'"\n]*['"]\s*:\s*[^,}\n]*\baccuracy\b""",
             "étiquette « Précision » pour la clé accuracy (code)", "« Exactitude »", scope="code"),
    TermRule(r"\b(?:vecteurs?|modèles?|couches?|espaces?)\s+d['’](?:intégration|incorporation)s?\b"
             r"|\b(?:intégrations?|incorporations?|enchâssements?)\s+(?:de\s+(?:mots?|phrases?|jetons?|"
             r"textes?|documents?)|lexicales?|vectorielles?|sémantiques?)\b",
             "« intégration de mots », « vecteurs d'intégration », « incorporation de phrases »",
             "« plongement » (ou embedding)"),
    TermRule(r"\bquantis(?:ation|ations|er|é|ée|és|ées)\b", "« quantisation », « quantisé »",
             "« quantification », « quantifié »"),
    TermRule(r"\bmise en commun\b", "« mise en commun » (pooling)", "« agrégation » (pooling)"),
    TermRule(r"\b(?:réglage|ajustement)s?\s+fins?\b|\bpeaufinage\b",
             "« réglage fin », « ajustement fin », « peaufinage »", "« affinage » (fine-tuning)"),
    # L'anglais reste permis en italique (*fine-tuning*, *learning rate*), entre parenthèses à la
    # première occurrence, et dans le titre d'un chapitre ; ailleurs, le terme du glossaire.
    TermRule(r"(?<![*_\w./`-])fine[- ]?tun(?:ing|ings|er|é|ée|és|ées|ez|ons|es|e)\b(?![*_])",
             "« fine-tuning », « fine-tuner »", "« affinage », « affiner »",
             exempt_if_line_has=r"^#\s|\{doc\}`"),
    TermRule(r"(?<![*_\w-])learning[- ]rates?\b(?![*_])", "« learning rate »", "« taux d'apprentissage »"),
    TermRule(r"\b(?:le|du|au|sur\s+le|jeu\s+de|partie\s+de|split\s+de)\s+dev\b(?![*_])",
             "« le dev », « jeu de dev »", "« la validation », « le jeu de validation »"),
    TermRule(r"\b(?:une|la|cette)\s+(?:seule\s+|autre\s+|même\s+|petite\s+|grosse\s+)?GPU\b",
             "« une GPU », « une seule GPU »", "« un GPU » (le processeur graphique, masculin)"),
    TermRule(r"\blibrairies?\b", "« librairie » (library)", "« bibliothèque »"),
    TermRule(r"\bsets?\s+de\s+données\b", "« set de données »", "« jeu de données »"),
    TermRule(r"\binférence\s+(?:du|de|en)\s+langage\s+naturel\b", "« inférence de langage naturel »",
             "« inférence en langue naturelle » (NLI)"),
)


_TERMS_OFF = re.compile(r"^%[ \t]*glossaire:[ \t]*off[ \t]*$[\s\S]*?(?:^%[ \t]*glossaire:[ \t]*on[ \t]*$|\Z)",
                        re.MULTILINE | re.IGNORECASE)


def _views(text: str) -> dict[str, str]:
    """Deux vues de la page, de même longueur qu'elle : la prose (code en ligne compris) et le code."""
    prose, code = [], []
    blank = lambda s: re.sub(r"[^\n]", " ", s)  # noqa: E731
    for chunk in split_blocks(text):
        if chunk.kind == "prose":
            for piece, kind in split_inline(chunk.text):
                keep = kind in (None, "code")
                prose.append(piece if keep else blank(piece))
            code.append(blank(chunk.text))
        else:
            prose.append(blank(chunk.text))
            code.append(chunk.text if chunk.kind == "code" else blank(chunk.text))
    views = {"prose": "".join(prose), "code": "".join(code)}
    for off in _TERMS_OFF.finditer(text):  # zones exclues de la vérification des termes
        for name, view in views.items():
            views[name] = view[: off.start()] + blank(off.group()) + view[off.end():]
    return views


def _sentence(view: str, start: int, end: int) -> str:
    left = max(view.rfind(". ", 0, start), view.rfind("\n\n", 0, start), view.rfind("? ", 0, start))
    right = min((p for p in (view.find(". ", end), view.find("\n\n", end)) if p >= 0), default=len(view))
    return view[left + 1: right]


def check_terms(text: str, path: str = "<texte>") -> list[Issue]:
    """Traductions à éviter (glossaire) dans la prose et dans les chaînes des cellules de code."""
    views = _views(text)
    issues = []
    for rule in TERM_RULES:
        view = views[rule.scope]
        for m in rule.regex().finditer(view):
            if rule.exempt_if_line_has:
                line_start = view.rfind("\n", 0, m.start()) + 1
                line_end = view.find("\n", m.end())
                if re.search(rule.exempt_if_line_has, text[line_start: line_end if line_end >= 0 else None]):
                    continue
            if rule.exempt_if_sentence_has and re.search(
                rule.exempt_if_sentence_has, _sentence(view, m.start(), m.end()), re.IGNORECASE
            ):
                continue
            line, col = _line_col(text, m.start())
            found = " ".join(m.group().split())
            issues.append(Issue(path, line, col, f"« {found} » : à éviter ({rule.avoid}) ; écrire {rule.use}"))
    return sorted(issues, key=lambda x: (x.line, x.column))


def check(text: str, path: str = "<texte>") -> list[Issue]:
    """Typographie et terminologie d'une page."""
    return sorted(check_typography(text, path) + check_terms(text, path), key=lambda x: (x.line, x.column))


# --- ligne de commande --------------------------------------------------------------

def _read(path: Path) -> str:
    if path.suffix != ".md":
        raise ValueError(f"{path} : seules les pages MyST (.md) sont acceptées, pas « {path.suffix or 'sans extension'} ».")
    if not path.is_file():
        raise ValueError(f"{path} : fichier introuvable.")
    return path.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m tools.typography",
        description="Vérifie (check) ou corrige (fix) la typographie française de pages MyST ; "
                    "signale aussi les traductions à éviter du glossaire.",
    )
    parser.add_argument("command", choices=["check", "fix"])
    parser.add_argument("files", nargs="+", type=Path, metavar="FICHIER.md")
    args = parser.parse_args(argv)
    remaining = 0
    for path in args.files:
        try:
            text = _read(path)
        except ValueError as err:
            print(f"erreur : {err}", file=sys.stderr)
            return 2
        if args.command == "fix":
            fixed = fix_typography(text)
            if fixed != text:
                path.write_text(fixed, encoding="utf-8")
                print(f"corrigé : {path} ({len(check_typography(text))} écart(s) de typographie)")
            text = fixed
        issues = check(text, str(path))
        for issue in issues:
            print(issue)
        remaining += len(issues)
    if remaining:
        print(f"{remaining} écart(s) restant(s).", file=sys.stderr)
    return 1 if remaining else 0


if __name__ == "__main__":
    sys.exit(main())
