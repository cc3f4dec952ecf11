"""tools.typography : typographie française et traductions à éviter, sur des exemples et sur le livre."""

import os
import re
import subprocess
import sys

import pytest

from atelier.runtime.config import REPO_ROOT
from tools import typography as ty

NB = ty.NBSP
BOOK_PAGES = sorted((REPO_ROOT / "book").glob("*.md"))
GLOSSARY = REPO_ROOT / "book" / "90_glossaire.md"


def fix(text: str) -> str:
    return ty.fix_typography(text)


# --- typographie : ce qui doit être corrigé --------------------------------------

@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("Exemple : suite", f"Exemple{NB}: suite"),
        ("Exemple: suite", f"Exemple{NB}: suite"),
        ("Vraiment ?", f"Vraiment{NB}?"),
        ("Non!", f"Non{NB}!"),
        ("a ; b", f"a{NB}; b"),
        ("Pourquoi ?!", f"Pourquoi{NB}?!"),
        ("un « mot » ici", f"un «{NB}mot{NB}» ici"),
        ("un «mot» ici", f"un «{NB}mot{NB}» ici"),
        ("**Colab** : le bouton", f"**Colab**{NB}: le bouton"),
        ("`light` : défaut", f"`light`{NB}: défaut"),
        ("[Pourquoi?](https://x.org/a?b=c)", f"[Pourquoi{NB}?](https://x.org/a?b=c)"),
        ("# Titre : sous-titre", f"# Titre{NB}: sous-titre"),
        ("| a : b |", f"| a{NB}: b |"),
        ("Citation «\nsuite » ici.", f"Citation «{NB}suite{NB}» ici."),
        ("Question\n? oui", f"Question{NB}? oui"),
        ("Texte\n» fin", f"Texte{NB}» fin"),
        ("{cite}`a:b` et {doc}`glossaire <90_glossaire>`: ok", f"{{cite}}`a:b` et {{doc}}`glossaire <90_glossaire>`{NB}: ok"),
    ],
)
def test_fixes_prose(before, after):
    assert fix(before) == after
    assert ty.check_typography(after) == []
    assert ty.check_typography(before), "l'écart aurait dû être signalé"


def test_narrow_nbsp_is_accepted():
    text = "Exemple\u202f: «\u202fmot\u202f» ?"
    assert [i.message for i in ty.check_typography(text)] == ["espace ordinaire avant « ? » : espace insécable attendue"]


# --- typographie : ce qui ne doit jamais être touché ---------------------------------

UNTOUCHED = [
    "Voir https://example.org/a?b=c&d=e:f et <https://x.org/?q=1>.",
    "Le code `x ? y : z` et ``a ; b`` reste tel quel.",
    "Les maths $a : b$ et \\(f : x \\mapsto y\\) restent telles quelles.",
    "Heure 10:30, rapport 3:1, 16:9.",
    "![image](img/a?b.png)",
    "light\n: définition d'un terme (liste de définitions)",
    "mail@exemple.fr",
    "(cible)=\n",
    "% commentaire : invisible\n",
    "+++ {\"tags\": [\"x\"]}\n",
    "[ref]: https://exemple.org/a:b\n",
    "|:---|---:|\n",
    "<div class=\"a : b\">\n",
    "{{ variable : x }}",
    "Une entité&nbsp;: ici et &#8239;!",
]


@pytest.mark.parametrize("text", UNTOUCHED)
def test_leaves_non_prose_alone(text):
    assert fix(text) == text
    assert ty.check_typography(text) == []


def test_leaves_code_cells_math_blocks_and_front_matter_alone():
    page = (
        "---\njupytext:\n  text_representation:\n    extension: .md\nkernelspec:\n  name: python3\n---\n\n"
        "```{code-cell} ipython3\n:tags: [remove-output]\nprint(\"a : b ; « c » ?\")\n```\n\n"
        "```python\nd = {'a': 1} ; e = f ? g\n```\n\n"
        "~~~\nx : y\n~~~\n\n"
        "$$\nf(x) : y\n$$\n\n"
        "\\begin{align}\na &: b\n\\end{align}\n\n"
        "```{figure} img.png\n:name: fig-a\n:alt: texte : alt\n```\n\n"
        "```{bibliography}\n:all:\n```\n\n"
        "% typographie: off\nHello: world\n% typographie: on\n\n"
        "<!--\nnote : cachée\n-->\n"
    )
    assert fix(page) == page
    assert ty.check_typography(page) == []


def test_prose_directives_are_checked_but_not_their_options():
    page = ":::{note} Titre: ici\n:class: dropdown\nTexte: ici.\n:::\n\n```{admonition} Pourquoi?\n:class: tip\nCar !\n```\n"
    fixed = fix(page)
    assert fixed == (
        f":::{{note}} Titre{NB}: ici\n:class: dropdown\nTexte{NB}: ici.\n:::\n\n"
        f"```{{admonition}} Pourquoi{NB}?\n:class: tip\nCar{NB}!\n```\n"
    )


def test_nested_fences_inside_prose_directive():
    page = "````{note}\nAvant : x\n```python\na = b ? c : d\n```\nAprès : y\n````\n"
    assert fix(page) == f"````{{note}}\nAvant{NB}: x\n```python\na = b ? c : d\n```\nAprès{NB}: y\n````\n"


def test_issue_positions_point_at_the_original_text():
    text = "ligne un\n`code : x` puis fin : ici\n"
    (issue,) = ty.check_typography(text, "p.md")
    assert (issue.line, issue.column) == (2, 21)
    assert text.splitlines()[1][issue.column - 1] == ":"
    assert str(issue).startswith("p.md:2:21:")


@pytest.mark.parametrize("page", BOOK_PAGES, ids=[p.name for p in BOOK_PAGES])
def test_fixer_is_idempotent_and_only_touches_spaces(page):
    text = page.read_text("utf-8")
    once = fix(text)
    assert fix(once) == once
    assert ty.check_typography(once) == [] or all("début de ligne" in i.message or "fin de ligne" in i.message
                                                  for i in ty.check_typography(once))
    # La correction ne change que des espaces (et des sauts de ligne recollés) : rien d'autre.
    assert re.sub(r"\s", "", once) == re.sub(r"\s", "", text)


# --- terminologie ----------------------------------------------------------------

@pytest.mark.parametrize(
    "text",
    [
        "La précision de classification atteint 85 %.",
        "On mesure la précision du modèle sur le jeu de test.",
        "Le modèle obtient une précision de 91,2 % sur XNLI.",
        "La précision (*accuracy*) augmente.",
        "L'accuracy, ou précision, augmente.",
        "Un taux de précision élevé.",
        "Les vecteurs d'intégration de la phrase.",
        "L'intégration de mots de Word2Vec.",
        "La quantisation en 4 bits.",
        "La mise en commun des jetons.",
        "Le réglage fin du modèle.",
        "La librairie transformers.",
        "Un set de données français.",
        "L'inférence de langage naturel.",
        "On fine-tune le modèle sur SIB-200.",
        "Le fine-tuning complet coûte plus cher.",
        "Un modèle fine-tuné.",
        "Une learning rate faible.",
        "Le learning rate est choisi sur le dev.",
        "Les scores sur le dev.",
        "Entraîné sur une seule GPU.",
    ],
)
def test_forbidden_translations_are_flagged(text):
    assert ty.check_terms(text), text


@pytest.mark.parametrize(
    "text",
    [
        "L'exactitude de classification atteint 85 %.",
        "La précision et le rappel de la classe positive sont de 80 % et 60 %.",
        "Une précision de 85 % pour un rappel de 40 %.",
        "La précision bf16 suffit ; en demi-précision, la précision du modèle baisse à peine.",
        "Les poids passent d'une précision de 32 bits à 4 bits.",
        "On mesure avec précision la durée.",
        "Le plongement de la phrase, ou *embedding*.",
        "La quantification NF4 et l'agrégation (*pooling*).",
        "L'intégration continue du dépôt.",
        "Un affinage (*fine-tuning*) court.",
        "# Fine-tuning d'embeddings ou de modèle ?",
        "Le taux d'apprentissage (*learning rate*) est choisi sur la validation.",
        "Les scores sur XNLI dev (la partie *dev* de XNLI).",
        "Entraîné sur un seul GPU, le `fine_tuning` reste court.",
    ],
)
def test_correct_uses_are_not_flagged(text):
    assert ty.check_terms(text) == [], text


def test_accuracy_label_in_code_is_flagged_but_not_prose_rules_in_code():
    page = (
        "```{code-cell} ipython3\n"
        "fig.update_layout(yaxis_title='Exactitude')\n"
        "labels = {\"accuracy\": \"Précision\", \"precision\": \"précision\"}\n"
        "# la librairie pandas (commentaire de code : pas de la prose)\n"
        "```\n"
    )
    issues = ty.check_terms(page)
    assert [i.line for i in issues] == [3]
    ok = "```{code-cell} ipython3\nlabels = {\"accuracy\": \"Exactitude\", \"precision\": \"Précision\"}\n```\n"
    assert ty.check_terms(ok) == []


def test_glossary_off_switch():
    text = "% glossaire: off\nLa précision de classification.\n% glossaire: on\nLa librairie.\n"
    issues = ty.check_terms(text)
    assert len(issues) == 1 and issues[0].line == 4


def test_every_rule_is_listed_in_the_glossary():
    glossary = GLOSSARY.read_text("utf-8")
    section = glossary[glossary.index("## Traductions à éviter"):]
    for rule in ty.TERM_RULES:
        first = re.search(r"«\s*([^»]+?)\s*»", rule.avoid)[1]
        assert first.replace(" ", "") in section.replace("\u00a0", "").replace(" ", ""), rule.avoid


def test_glossary_covers_the_books_terms():
    glossary = GLOSSARY.read_text("utf-8").replace("\u00a0", " ")
    for term in ["jeton", "plongement", "attention", "logits", "échantillonnage", "température", "perplexité",
                 "affinage", "LoRA", "quantification", "exactitude", "précision", "rappel", "F1", "NLI",
                 "paraphrase", "agrégation", "*token*", "*embedding*", "*sampling*", "*fine-tuning*",
                 "*quantization*", "*accuracy*", "*precision*", "*recall*", "*pooling*"]:
        assert term in glossary, term


# --- le livre lui-même ----------------------------------------------------------------

@pytest.mark.parametrize("page", BOOK_PAGES, ids=[p.name for p in BOOK_PAGES])
def test_book_page_typography(page):
    issues = ty.check_typography(page.read_text("utf-8"), str(page.relative_to(REPO_ROOT)))
    assert not issues, (
        f"{len(issues)} écart(s) ; corrigez avec `python -m tools.typography fix {page.relative_to(REPO_ROOT)}` :\n"
        + "\n".join(map(str, issues[:30]))
    )


@pytest.mark.parametrize("page", BOOK_PAGES, ids=[p.name for p in BOOK_PAGES])
def test_book_page_terminology(page):
    issues = ty.check_terms(page.read_text("utf-8"), str(page.relative_to(REPO_ROOT)))
    assert not issues, "traductions à éviter (voir book/90_glossaire.md) :\n" + "\n".join(map(str, issues))


# --- ligne de commande ------------------------------------------------------------------

def _cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    return subprocess.run([sys.executable, "-m", "tools.typography", *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


def test_cli_check_and_fix(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Titre\n\nUn « mot » : ici.\n\n```python\na = b ? c : d\n```\n", "utf-8")
    run = _cli("check", str(page))
    assert run.returncode == 1 and "p.md:3:" in run.stdout
    run = _cli("fix", str(page))
    assert run.returncode == 0, run.stdout + run.stderr
    assert page.read_text("utf-8") == f"# Titre\n\nUn «{NB}mot{NB}»{NB}: ici.\n\n```python\na = b ? c : d\n```\n"
    assert _cli("check", str(page)).returncode == 0


def test_cli_rejects_bad_input(tmp_path):
    run = _cli("check", str(tmp_path / "absent.md"))
    assert run.returncode == 2 and "introuvable" in run.stderr
    other = tmp_path / "a.ipynb"
    other.write_text("{}", "utf-8")
    run = _cli("fix", str(other))
    assert run.returncode == 2 and "seules les pages MyST" in run.stderr
    assert _cli("corrige", str(other)).returncode == 2


def test_glossary_linker_links_first_prose_use_only():
    from tools import glossary

    terms = glossary.glossary_terms()
    assert "jeton" in terms and "affinage" in terms
    text = "# Jeton\n\nUn jeton, puis des jetons.\n\n```{code-cell} ipython3\njeton = 1\n```\n\nL'affinage.\n"
    new, added = glossary.link(text, ["jeton", "affinage"])
    assert new == "# Jeton\n\nUn {term}`jeton`, puis des jetons.\n\n```{code-cell} ipython3\njeton = 1\n```\n\nL'{term}`affinage`.\n"
    assert added == ["jeton", "affinage"]
    assert glossary.link(new, ["jeton", "affinage"]) == (new, [])  # idempotent
    new, _ = glossary.link("Des plongements.\n", ["plongement"])
    assert new == "Des {term}`plongements <plongement>`.\n"
