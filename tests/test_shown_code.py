"""Le code montré par les chapitres est celui du paquet (issue 14).

Une cellule de code dont la première ligne est ``# atelier.<module> : …`` montre
le code de ce module, tel quel : chaque ``def``/``class`` de premier niveau de la
cellule doit exister dans le module avec un texte identique (docstring et
commentaires compris, après retrait de l'indentation commune). Le chapitre exécute
la cellule, ses expériences utilisent donc la fonction montrée ; les tests du
module prouvent que la copie du paquet est égale à la bibliothèque. Si l'une des
deux copies change sans l'autre, ce test échoue en nommant le chapitre, la
cellule et l'objet.

Écrire une telle cellule : première ligne ``# atelier.anatomie.attention : code
du module, tel quel``, puis une ou plusieurs fonctions copiées du module (les
lignes hors ``def``/``class``, imports par exemple, sont libres). Une fonction
longue se découpe dans le module en fonctions plus courtes, montrées en
plusieurs cellules avec du texte entre elles.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import nbformat
import pytest

from tools import build

MARK = re.compile(r"^#\s*(atelier(?:\.\w+)+)\s+:")
CHAPTERS = build.chapter_sources()


def _definitions(source: str) -> dict[str, str]:
    """Texte de chaque ``def``/``class`` de premier niveau d'un code source, par nom."""
    tree = ast.parse(source)
    lines = source.splitlines()
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            # Des décorateurs à la fin du corps : les décorateurs font partie de l'objet montré.
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            segment = "\n".join(lines[first - 1:node.end_lineno])
            found[node.name] = textwrap.dedent(segment).strip()
    return found


def _module_definitions(module: str) -> dict[str, str] | None:
    path = build.module_file(module)
    if path is None:
        return None
    return _definitions(path.read_text("utf-8"))


def shown_code_problems(cells: list[tuple[int, str]], where: str) -> list[str]:
    """Écarts entre les cellules marquées ``# atelier.<module> :`` et leur module (vide si aucun).

    ``cells`` : (rang, source) des cellules de code ; ``where`` : nom du chapitre, pour les messages.
    """
    problems = []
    for rank, source in cells:
        first = source.lstrip("\n").split("\n", 1)[0]
        match = MARK.match(first)
        if not match:
            continue
        module = match.group(1)
        label = f"{where}, cellule {rank} (« {first[:60]} »)"
        reference = _module_definitions(module)
        if reference is None:
            problems.append(f"{label} : le module {module} n'existe pas dans le paquet atelier.")
            continue
        # Les lignes IPython (%magie, !commande) ne sont pas du Python : on les ignore.
        python = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n"))
        try:
            shown = _definitions(python)
        except SyntaxError as err:
            problems.append(f"{label} : la cellule n'est pas du Python valide ({err}).")
            continue
        if not shown:
            problems.append(f"{label} : la cellule annonce le code de {module} mais ne définit aucune fonction ni classe.")
        for name, text in shown.items():
            if name not in reference:
                problems.append(f"{label} : {name} n'est pas défini dans {module}.")
            elif text != reference[name]:
                a, b = text.splitlines(), reference[name].splitlines()
                line = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                shown_line = a[line] if line < len(a) else "(fin)"
                module_line = b[line] if line < len(b) else "(fin)"
                problems.append(
                    f"{label} : {name} diffère de {module}.{name} à sa ligne {line + 1} :\n"
                    f"    page   : {shown_line!r}\n    module : {module_line!r}"
                )
    return problems


def _md_cells(md: Path) -> list[tuple[int, str]]:
    nb = build.read_md_notebook(md)
    return [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def _ipynb_cells(ipynb: Path) -> list[tuple[int, str]]:
    nb = nbformat.read(ipynb, as_version=4)
    return [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def _marked(cells: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return [(i, s) for i, s in cells if MARK.match(s.lstrip("\n").split("\n", 1)[0])]


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_shown_code_is_the_module_code(md):
    problems = shown_code_problems(_md_cells(md), md.name)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_shows_the_same_code(md):
    """Le notebook téléchargeable (Colab, Binder) montre les mêmes cellules, et elles aussi sont justes."""
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} manque : lancez `python -m tools.build notebooks`."
    page, notebook = _marked(_md_cells(md)), _marked(_ipynb_cells(ipynb))
    assert [s.strip() for _, s in page] == [s.strip() for _, s in notebook], (
        f"{ipynb.name} ne montre pas le même code que {md.name} : lancez `python -m tools.build notebooks`."
    )
    problems = shown_code_problems(_ipynb_cells(ipynb), ipynb.name)
    assert not problems, "\n".join(problems)


def test_chapters_show_code():
    """Les chapitres qui reconstruisent un mécanisme le montrent (au moins une cellule marquée)."""
    shown = {md.stem[:2] for md in CHAPTERS if _marked(_md_cells(md))}
    assert {"01", "02", "04"} <= shown, f"chapitres montrant du code : {sorted(shown)}"


# --- le vérificateur lui-même -------------------------------------------------

REAL = build.module_file("atelier.anatomie.attention").read_text("utf-8")


def _cell_with(name: str, module: str = "atelier.anatomie.attention") -> str:
    return f"# {module} : code du module, tel quel\nimport torch\n\n\n{_definitions(REAL)[name]}\n"


def test_checker_accepts_an_exact_copy():
    name = next(iter(_definitions(REAL)))
    assert shown_code_problems([(3, _cell_with(name))], "essai.md") == []


def test_checker_ignores_unmarked_cells():
    assert shown_code_problems([(0, "def f():\n    return 1\n"), (1, "# atelier : rien\nx = 1")], "essai.md") == []


def test_checker_rejects_a_drifted_copy():
    name = next(iter(_definitions(REAL)))
    cell = _cell_with(name)
    lines = cell.rstrip("\n").split("\n")
    lines.insert(-1, "    pass  # ligne ajoutée sur la page seulement")
    problems = shown_code_problems([(7, "\n".join(lines))], "essai.md")
    assert len(problems) == 1
    assert "essai.md, cellule 7" in problems[0] and f"{name} diffère" in problems[0]


def test_checker_rejects_a_changed_comment():
    name = next(n for n, t in _definitions(REAL).items() if "#" in t)
    text = _definitions(REAL)[name]
    cell = _cell_with(name).replace(text, text.replace("#", "# modifié :", 1))
    assert any(f"{name} diffère" in p for p in shown_code_problems([(1, cell)], "essai.md"))


def test_checker_rejects_unknown_names_modules_and_empty_cells():
    unknown = "# atelier.anatomie.attention : tel quel\ndef inventee():\n    return 0\n"
    missing_module = "# atelier.anatomie.inexistant : tel quel\ndef f():\n    return 0\n"
    empty = "# atelier.anatomie.attention : tel quel\nimport torch\n"
    problems = shown_code_problems([(1, unknown), (2, missing_module), (3, empty)], "essai.md")
    assert len(problems) == 3
    assert "inventee n'est pas défini dans atelier.anatomie.attention" in problems[0]
    assert "atelier.anatomie.inexistant n'existe pas" in problems[1]
    assert "ne définit aucune fonction" in problems[2]


def test_sync_tool_copies_the_module_definition():
    """``python -m tools.shown`` remet dans la cellule le texte du module ; le reste de la cellule ne bouge pas."""
    from tools import shown

    drifted = ("# atelier.anatomie.attention : code du module, tel quel\n"
               "from atelier.anatomie.attention import check_repeat_kv   # import libre\n\n\n"
               "def repeat_kv(x, n_rep):\n    return x  # copie périmée\n\n\nprint('fin')")
    synced = shown.sync_cell(drifted)
    assert "copie périmée" not in synced and synced.endswith("print('fin')")
    assert "import libre" in synced
    assert not shown_code_problems([(0, synced)], "essai")
    assert shown_code_problems([(0, drifted)], "essai")
    unmarked = "def repeat_kv(x, n_rep):\n    return x\n"
    assert shown.sync_cell(unmarked) == unmarked
