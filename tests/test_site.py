"""Le site construit (`_build/html`) et son appareil savant.

- Sans marqueur : bibliographie (fichiers déclarés, clés en double, citations sans
  entrée), table des matières, et les vérificateurs d'`tools.site` éprouvés sur
  des pages fabriquées (ils doivent savoir échouer).
- `@pytest.mark.site` (lancés par `make test` après le build) : boutons de
  lancement et de téléchargement, aucune ressource distante, liens internes et
  ancres, forme des liens externes, poids des pages, tampon d'exécution.

`ATELIER_BUILD` désigne un autre dossier de build ; `ATELIER_SITE_SOURCE`, un
autre dépôt source (pour éprouver ces tests sur un livre d'essai).
"""

import json
import os
from pathlib import Path

import nbformat
import pytest

from atelier.runtime.config import REPO_ROOT, build_dir
from tools import site

ROOT = Path(os.environ.get("ATELIER_SITE_SOURCE", REPO_ROOT)).resolve()
CFG = site.book_config(ROOT)
SITE = site.site_dir()
PAGES = site.html_pages(SITE) if (SITE / "index.html").exists() else []
NOTEBOOK_DOCS = site.notebook_docnames(ROOT)
CHAPTER_PAGES = [SITE / f"{doc}.html" for doc in NOTEBOOK_DOCS if (SITE / f"{doc}.html").exists()]
ARTIFACTS = REPO_ROOT / "test-artifacts"


def _rel(page: Path) -> str:
    return page.relative_to(SITE).as_posix()


def _toc_docnames() -> list[str]:
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text("utf-8"))
    found = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                found.append(entry["file"])
            walk(entry.get("sections"))
            for part in entry.get("parts", []):
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return [f.removesuffix(".md").removesuffix(".ipynb") for f in found]


# --- bibliographie et table des matières (sources) ------------------------------------
# Clés en double et citations sans entrée : sphinxcontrib-bibtex les signale
# (« duplicate citation », « could not find bibtex key ») et le build strict (-W) échoue.

BIB_FILES = sorted((ROOT / "book" / "refs").glob("*.bib"))


def test_every_bib_file_is_declared_in_config():
    declared = {Path(p).as_posix() for p in CFG.get("bibtex_bibfiles", [])}
    present = {p.relative_to(ROOT).as_posix() for p in BIB_FILES}
    assert present - declared == set(), f"à ajouter à bibtex_bibfiles dans _config.yml : {sorted(present - declared)}"
    assert declared - present == set(), f"déclarés dans _config.yml mais absents : {sorted(declared - present)}"


def test_bibliography_page_lists_everything():
    text = (ROOT / "book" / "98_bibliographie.md").read_text("utf-8")
    assert "```{bibliography}" in text and ":all:" in text


def test_every_chapter_is_in_the_toc():
    toc = set(_toc_docnames())
    assert set(NOTEBOOK_DOCS) - toc == set(), f"chapitres absents de _toc.yml : {sorted(set(NOTEBOOK_DOCS) - toc)}"
    assert "book/90_glossaire" in toc


def _page(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<!DOCTYPE html><html><head></head><body>{body}</body></html>", "utf-8")
    return path


def test_remote_resources_are_detected(tmp_path):
    bad = _page(tmp_path, "a.html", (
        '<script src="https://cdn.example.org/x.js"></script>'
        '<link rel="stylesheet" href="//fonts.example.org/f.css">'
        '<link rel="canonical" href="https://exemple.org/a.html">'
        '<iframe src="http://exemple.org/"></iframe>'
        '<img srcset="a.png 1x, https://exemple.org/b.png 2x">'
        '<div style="background: url(https://exemple.org/c.png)"></div>'
        '<style>@import "https://exemple.org/d.css";</style>'
        '<a href="https://exemple.org/lien">un lien n\'est pas une ressource</a>'
        '<script src="_static/local.js"></script><img src="data:image/png;base64,AAAA">'
    ))
    found = site.remote_resources_in_html(site.soup(bad))
    assert len(found) == 6, found
    css = tmp_path / "_static" / "s.css"
    css.parent.mkdir()
    css.write_text('a{background:url("data:image/svg+xml;utf8,<svg xmlns=\'http://www.w3.org/2000/svg\'/>")}'
                   "@font-face{src:url(https://fonts.example.org/f.woff2)}", "utf-8")
    assert site.remote_resources_in_css(tmp_path) == ["_static/s.css : https://fonts.example.org/f.woff2"]


def test_internal_link_problems_are_detected(tmp_path):
    _page(tmp_path, "index.html", '<a id="haut"></a><a href="book/a.html">a</a>')
    _page(tmp_path, "book/b.html", '<h2 id="section-1">S</h2>')
    _page(tmp_path, "book/a.html", (
        '<a href="b.html#section-1">ok</a><a href="b.html#absente">ancre absente</a>'
        '<a href="c.html">fichier absent</a><a href="../index.html#haut">ok</a>'
        '<a href="https://exemple.org/">externe</a><a href="mailto:a@b.fr">courriel</a>'
        '<img src="../_images/x.png">'
    ))
    problems = site.internal_link_problems(tmp_path)
    assert len(problems) == 3, problems
    assert any("absente" in p for p in problems) and any("c.html" in p for p in problems)
    assert any("x.png" in p for p in problems)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://arxiv.org/abs/1706.03762", True),
        ("https://doi.org/10.5281/zenodo.4539666", True),
        ("https://github.com/o/r/issues/new?title=Issue%20on%20page", True),
        ("http://arxiv.org/abs/1706.03762", False),
        ("https://localhost:8000/", False),
        ("https://exemple", False),
        ("https://exemple.org/a b", False),
        ("https://exemple.org/%zz", False),
        ("ftp://exemple.org/", False),
    ],
)
def test_external_link_format(url, ok):
    assert (site.external_link_problem(url) is None) == ok


def test_launch_url_parsing():
    org, repo, branch = site._repo_parts(CFG)
    binder = f"https://mybinder.org/v2/gh/{org}/{repo}/{branch}?urlpath=lab/tree/book/01_x.ipynb"
    colab = f"https://colab.research.google.com/github/{org}/{repo}/blob/{branch}/book/01_x.ipynb"
    assert site.notebook_path("Binder", binder, CFG) == "book/01_x.ipynb"
    assert site.notebook_path("Colab", colab, CFG) == "book/01_x.ipynb"
    with pytest.raises(ValueError, match="attendu"):
        site.notebook_path("Colab", colab.replace(f"/{branch}/", "/autre/"), CFG)
    with pytest.raises(ValueError, match="attendu"):
        site.notebook_path("Binder", binder.replace(f"/{org}/", "/autre/"), CFG)
    with pytest.raises(ValueError, match="sans chemin"):
        site.notebook_path("Binder", binder.split("?")[0], CFG)
    with pytest.raises(ValueError, match="inconnu"):
        site.notebook_path("Kaggle", colab, CFG)


def test_tracked_files_reads_git():
    files, ref = site.tracked_files(CFG["repository"].get("branch", "main"), ROOT)
    assert "_config.yml" in files and ref


# --- le site construit ------------------------------------------------------------------

@pytest.mark.site
def test_site_is_built():
    assert (SITE / "index.html").exists(), f"pas de site construit dans {SITE} : lancez `make book`."
    missing = [doc for doc in _toc_docnames() if not (SITE / f"{doc}.html").exists()]
    assert not missing, f"pages de la table des matières absentes du site : {missing}"
    assert CHAPTER_PAGES, "aucune page de chapitre exécutable dans le site"


@pytest.mark.site
@pytest.mark.parametrize("page", CHAPTER_PAGES, ids=_rel)
def test_launch_buttons_open_a_tracked_notebook(page):
    links = site.launch_links(page, CFG)
    assert set(links) == {"Binder", "Colab"}, f"boutons de lancement trouvés : {sorted(links)}"
    branch = CFG["repository"].get("branch", "main")
    tracked, ref = site.tracked_files(branch, ROOT)
    docname = page.relative_to(SITE).with_suffix("").as_posix()
    for provider, url in links.items():
        path = site.notebook_path(provider, url, CFG)
        assert path == f"{docname}.ipynb", f"{provider} ouvre {path}, pas le notebook du chapitre"
        assert path in tracked, f"{provider} ouvre {path}, qui n'est pas suivi par git sur {ref} (lien mort une fois publié)"


@pytest.mark.site
@pytest.mark.parametrize("page", CHAPTER_PAGES, ids=_rel)
def test_download_menu_offers_executed_notebook_and_source(page):
    docname = page.relative_to(SITE).with_suffix("").as_posix()
    hrefs = {(page.parent / h).resolve() for h in site.download_links(page)}
    ipynb, md = SITE / "_sources" / f"{docname}.ipynb", SITE / "_sources" / f"{docname}.md"
    assert ipynb.resolve() in hrefs and md.resolve() in hrefs, f"menu de téléchargement : {site.download_links(page)}"
    assert md.read_text("utf-8") == (ROOT / f"{docname}.md").read_text("utf-8"), "la source téléchargée n'est pas celle du dépôt"
    nb = nbformat.read(ipynb, as_version=4)
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "le notebook téléchargé n'a pas de sorties : il n'est pas exécuté"
    )
    assert site.first_code_cell(ipynb) == site.first_code_cell(ROOT / f"{docname}.ipynb")


@pytest.mark.site
@pytest.mark.parametrize("page", CHAPTER_PAGES, ids=_rel)
def test_chapter_ends_with_execution_stamp(page):
    text = site.soup(page).get_text(" ")
    assert "Page exécutée le" in text, "tampon d'exécution (ctx.stamp()) absent"


@pytest.mark.site
def test_stylesheets_load_nothing_from_another_host():
    assert site.remote_resources_in_css(SITE) == []


@pytest.mark.site
def test_offline_assets_are_served_once():
    assert (SITE / "_static" / "plotly.min.js").is_file()
    assert (SITE / "_static" / "mathjax" / "tex-chtml.js").is_file()
    for page in CHAPTER_PAGES:
        html = page.read_text("utf-8")
        assert html.count("plotly.min.js") == 1, f"{_rel(page)} : plotly.js doit être chargé une fois, depuis _static"
        if 'class="math' in html:  # Sphinx ne charge MathJax que sur les pages qui ont des formules
            assert "mathjax/tex-chtml.js" in html, f"{_rel(page)} a des formules mais ne charge pas MathJax"
        assert "cdn.jsdelivr.net/npm/mathjax" not in html, f"{_rel(page)} charge MathJax depuis un CDN"
        assert "* plotly.js v" not in html, f"{_rel(page)} embarque plotly.js au lieu de le charger depuis _static"


@pytest.mark.site
def test_internal_links_and_anchors_resolve():
    problems = site.internal_link_problems(SITE)
    assert not problems, f"{len(problems)} lien(s) interne(s) cassé(s) :\n" + "\n".join(problems[:40])


@pytest.mark.site
def test_external_links_are_listed_and_well_formed():
    links = site.external_links(SITE, PAGES)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "liens-externes.txt").write_text(
        "".join(f"{url}\t{', '.join(pages)}\n" for url, pages in links.items()), "utf-8"
    )
    problems = {url: site.external_link_problem(url) for url in links}
    problems = {u: p for u, p in problems.items() if p}
    assert links, "aucun lien externe trouvé : l'analyse des pages a échoué"
    assert not problems, "liens externes mal formés : " + "; ".join(f"{u} ({p})" for u, p in problems.items())


@pytest.mark.site
def test_chapter_pages_weigh_at_most_2_mb():
    weights_file = build_dir() / "page-weights.json"
    assert weights_file.exists(), "le build n'a pas écrit _build/page-weights.json"
    weights = json.loads(weights_file.read_text("utf-8"))
    missing = [_rel(p) for p in PAGES if _rel(p) not in weights and _rel(p) not in {"genindex.html", "search.html"}]
    assert not missing, f"pages sans poids dans le rapport : {missing}"
    heavy = {_rel(p): weights[_rel(p)] for p in CHAPTER_PAGES if weights[_rel(p)] > site.MAX_PAGE_KIB}
    assert not heavy, f"pages de plus de {site.MAX_PAGE_KIB} Kio (hors ressources partagées) : {heavy}"


# Libellés anglais du thème (boutons, infobulles) qui ne doivent plus paraître sur le site.
THEME_EN = ("Launch interactive content", "Launch on Binder", "Launch on Colab", "Open issue", "Repository",
            "Source repositories", "Toggle primary sidebar", "Toggle secondary sidebar")


def test_theme_catalog_translates_the_missing_labels(tmp_path):
    import gettext

    from tools.sphinx import THEME_CATALOG, THEME_DIR, compile_theme_catalog

    trans = gettext.translation(THEME_CATALOG, localedir=compile_theme_catalog(tmp_path), languages=["fr"])
    for en in ("Launch on", "Launch interactive content", "Repository", "Source repositories", "Open issue"):
        assert trans.gettext(en) not in ("", en), en
    for name in ("toggle-primary-sidebar.html", "toggle-secondary-sidebar.html"):
        html = (THEME_DIR / "templates" / name).read_text("utf-8")
        assert "Afficher ou masquer" in html and "Toggle" not in html.split("-#}")[-1]


@pytest.mark.site
@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_no_english_theme_label_left(page):
    html = page.read_text("utf-8")
    left = [en for en in THEME_EN if f'"{en}"' in html or f">{en}<" in html]
    assert not left, f"libellés du thème restés en anglais : {left}"


# --- issue 14 : la page s'ouvre sur l'enseignement, exercices, glossaire ---------------------

import re  # noqa: E402

EXERCISE_CHAPTERS = ("01_anatomie", "02_embeddings", "04_lora_nf4")
_FENCED = re.compile(r"^```\{(?P<kind>exercise|solution-start|solution-end)\}[^\n]*\n(?P<opts>(?::[\w-]+:[^\n]*\n)*)",
                     re.MULTILINE)


def _exercise_blocks(text: str) -> tuple[list[str], dict[str, str]]:
    """(étiquettes des exercices, {étiquette : texte de sa solution}) d'un chapitre MyST."""
    labels, solutions = [], {}
    marks = list(_FENCED.finditer(text))
    for i, m in enumerate(marks):
        if m["kind"] == "exercise":
            label = re.search(r":label:\s*(\S+)", m["opts"])
            labels.append(label[1] if label else "")
        elif m["kind"] == "solution-start":
            target = m.group(0).split("}", 1)[1].split("\n", 1)[0].strip()
            end = next((n for n in marks[i + 1:] if n["kind"] == "solution-end"), None)
            solutions[target] = text[m.end(): end.start() if end else len(text)]
            assert ":class: dropdown" in m["opts"], f"la solution de {target} doit être repliée (:class: dropdown)"
    return labels, solutions


def _exercise_sources() -> list[Path]:
    return [p for p in sorted((ROOT / "book").glob("[0-9][0-9]_*.md")) if "```{exercise}" in p.read_text("utf-8")]


def test_chapters_end_with_a_recap_and_exercises():
    with_exercises = {p.stem for p in _exercise_sources()}
    assert set(EXERCISE_CHAPTERS) <= with_exercises, f"chapitres avec exercices : {sorted(with_exercises)}"
    for md in _exercise_sources():
        text = md.read_text("utf-8")
        assert "## À retenir" in text and "## Exercices" in text, md.name
        assert text.index("## À retenir") < text.index("## Exercices") < text.index("```{exercise}"), md.name


@pytest.mark.parametrize("md", _exercise_sources(), ids=lambda p: p.stem)
def test_every_exercise_has_an_executed_checked_solution(md):
    labels, solutions = _exercise_blocks(md.read_text("utf-8"))
    assert 3 <= len(labels) <= 5, f"{md.name} : {len(labels)} exercices, 3 à 5 attendus"
    assert len(set(labels)) == len(labels) and all(l.startswith(f"ex-{md.stem[:2]}-") for l in labels), labels
    assert set(solutions) == set(labels), f"{md.name} : exercices sans solution {sorted(set(labels) - set(solutions))}"
    for label, body in solutions.items():
        cells = re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", body, re.MULTILINE | re.DOTALL)
        assert cells, f"{md.name}, {label} : la solution n'a pas de cellule de code exécutée"
        assert any(re.search(r"^\s*assert\b", c, re.MULTILINE) for c in cells), (
            f"{md.name}, {label} : la solution ne vérifie rien (aucun assert)")


def _glossary_terms() -> set[str]:
    text = (ROOT / "book" / "90_glossaire.md").read_text("utf-8")
    terms = set()
    for block in re.findall(r"^:::\{glossary\}\n(.*?)^:::", text, re.MULTILINE | re.DOTALL):
        terms |= {line.strip().lower() for line in block.split("\n") if line.strip() and not line.startswith(" ")}
    return terms


def test_glossary_is_a_sphinx_glossary():
    terms = _glossary_terms()
    assert {"jeton", "plongement", "attention", "lora", "nf4", "affinage", "exactitude"} <= terms, sorted(terms)


@pytest.mark.parametrize("md", sorted((ROOT / "book").glob("[0-9][0-9]_*.md")), ids=lambda p: p.stem)
def test_term_links_point_to_glossary_entries(md):
    terms = _glossary_terms()
    used = re.findall(r"\{term\}`([^`]+)`", md.read_text("utf-8"))
    targets = [(m.group(1) if (m := re.search(r"<([^>]+)>\s*$", u)) else u).strip().lower() for u in used]
    assert not set(targets) - terms, f"{md.name} : termes absents du glossaire {sorted(set(targets) - terms)}"
    assert len(targets) == len(set(targets)), f"{md.name} : un terme n'est lié qu'à sa première occurrence"
    if md.stem[:2] in ("00", "01", "02", "04"):
        assert len(targets) >= 5, f"{md.name} : {len(targets)} liens vers le glossaire"


def _built_page(doc: str) -> Path:
    return SITE / f"book/{doc}.html"


@pytest.mark.site
@pytest.mark.parametrize("doc", EXERCISE_CHAPTERS)
def test_exercises_render_in_french_with_folded_solutions(doc):
    html_soup = site.soup(_built_page(doc))
    exercises = html_soup.select("div.exercise")
    solutions = html_soup.select("div.solution")
    assert 3 <= len(exercises) == len(solutions), (len(exercises), len(solutions))
    for node in exercises:
        title = node.select_one(".admonition-title").get_text(" ", strip=True)
        assert title.startswith("Exercice") and "Exercise" not in title, title
    for node in solutions:
        title = node.select_one(".admonition-title").get_text(" ", strip=True)
        assert "dropdown" in node.get("class", []), node.get("class")
        assert title == "Solution", title   # pas « Solution de Exercice 1 » ni « Solution to Exercise 1 »
        assert node.select("div.cell"), "la solution doit contenir sa cellule de code"


@pytest.mark.site
@pytest.mark.parametrize("doc", ["00_preface", *EXERCISE_CHAPTERS])
def test_page_opens_on_teaching_and_links_the_glossary(doc):
    html = _built_page(doc).read_text("utf-8")
    assert 'find_spec("atelier")' not in html and "find_spec(&quot;atelier&quot;)" not in html, (
        "la cellule d'installation ne doit pas paraître sur le site")
    html_soup = site.soup(_built_page(doc))
    links = [a["href"] for a in html_soup.select("a.reference") if "90_glossaire.html#term-" in a.get("href", "")]
    assert len(links) >= 5, f"{doc} : {len(links)} liens vers le glossaire"
    if doc != "00_preface":
        first = html_soup.select("div.cell")[0]
        assert "tag_hide-cell" in first.get("class", []) or "tag_remove-input" in first.get("class", []) or \
            "setup(" in first.get_text(), "la première cellule visible doit être repliée ou être setup()"
