"""Extension Sphinx du livre (déclarée dans ``_config.yml``).

- sert plotly.js **une seule fois** comme ressource du site (les figures des
  chapitres n'embarquent que leurs données, voir :mod:`atelier.runtime.book`) ;
- sert MathJax depuis une copie locale (paquet npm ``mathjax@3``), sans CDN ;
- invalide le cache d'exécution des chapitres dont un module d'``atelier``
  importé a changé (voir :mod:`tools.build`) ;
- traduit les libellés du thème qui n'ont pas de traduction française, par un
  catalogue de messages et deux gabarits surchargés (``tools/theme``) ; les
  libellés de sphinx-exercise (« Exercice ») viennent de son propre catalogue
  français, et le titre d'une solution est « Solution » (elle suit son exercice) ;
- fournit la directive ``execution-report``, remplie à partir des tampons
  ``_build/runs/*.json`` écrits par les chapitres (page « Exécution du livre »).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

from atelier.runtime import config
from atelier.runtime.fmt import nombre
from tools import build

MATHJAX_DIR = config.REPO_ROOT / "node_modules" / "mathjax" / "es5"
REPORT_DOCS: set[str] = set()
WEIGHTS_MARKER = "<!-- atelier: poids des pages -->"


# --- plotly.js et MathJax, hors ligne -----------------------------------------

def _plotly_js() -> Path:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.exists():
        raise ExtensionError(f"plotly.min.js introuvable dans le paquet plotly ({path}).")
    return path


def _on_config_inited(app: Sphinx, cfg) -> None:
    # Un dossier statique à nous, qui ne contient que plotly.min.js (copié du paquet plotly).
    static = config.build_dir() / "_atelier_static"
    static.mkdir(parents=True, exist_ok=True)
    target = static / "plotly.min.js"
    if not target.exists() or target.stat().st_size != _plotly_js().stat().st_size:
        shutil.copy2(_plotly_js(), target)
    cfg.html_static_path = list(cfg.html_static_path) + [str(static)]
    cfg.mathjax_path = "mathjax/tex-chtml.js"
    cfg.templates_path = [str(THEME_DIR / "templates")] + list(cfg.templates_path or [])
    # Un cache d'exécution par profil : changer de profil ré-exécute les chapitres.
    cfg.nb_execution_cache_path = str(build.execution_cache_dir())
    # sphinx-exercise : chaque solution suit son exercice, son titre est « Solution » (le titre
    # composé par défaut, « Solution de Exercice 1 », n'est pas du français).
    if hasattr(cfg, "exercise_style") and not cfg.exercise_style:
        cfg.exercise_style = "solution_follow_exercise"


def _on_builder_inited(app: Sphinx) -> None:
    _add_theme_translations(app)
    if app.builder.format != "html":
        return
    if not (MATHJAX_DIR / "tex-chtml.js").exists():
        raise ExtensionError(
            "MathJax n'est pas installé localement (node_modules/mathjax). "
            "Lancez `npm ci` à la racine du dépôt (ou `make book`, qui le fait)."
        )
    app.add_js_file("plotly.min.js", priority=200)
    build.invalidate_stale_chapters(app.srcdir, app.config.nb_execution_cache_path or "")


# Libellés du thème sphinx-book-theme sans traduction française dans le paquet : un
# catalogue de messages à nous (tools/theme/locale, domaine « booktheme » du thème),
# ajouté en repli derrière celui du thème, et deux composants dont le thème code le
# libellé en dur, surchargés par des gabarits (tools/theme/templates).
THEME_DIR = Path(__file__).resolve().parent / "theme"
THEME_CATALOG = "booktheme"


def compile_theme_catalog(out_dir: Path) -> Path:
    """Compile ``tools/theme/locale/*/LC_MESSAGES/*.po`` en ``.mo`` sous ``out_dir`` (babel) ; renvoie ``out_dir``."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in sorted((THEME_DIR / "locale").glob("*/LC_MESSAGES/*.po")):
        target = out_dir / po.relative_to(THEME_DIR / "locale").with_suffix(".mo")
        target.parent.mkdir(parents=True, exist_ok=True)
        with po.open("rb") as f:
            catalog = read_po(f)
        with target.open("wb") as f:
            write_mo(f, catalog)
    return out_dir


def _add_theme_translations(app: Sphinx) -> None:
    from sphinx import locale

    locale.init([str(compile_theme_catalog(config.build_dir() / "_atelier_locale"))], app.config.language, THEME_CATALOG)


PDF_HREF = 'href="latelier-des-llm.pdf"'  # lien du pied de page (_config.yml), relatif à la racine du site


def _link_pdf(outdir: Path) -> None:
    """Le lien « Le livre entier en PDF » du pied de page, relatif à chaque page (site publié sous un sous-chemin)."""
    for page in outdir.rglob("*.html"):
        depth = len(page.relative_to(outdir).parts) - 1
        if depth == 0:
            continue
        html = page.read_text(encoding="utf-8")
        if PDF_HREF in html:
            page.write_text(html.replace(PDF_HREF, f'href="{"../" * depth}latelier-des-llm.pdf"'), encoding="utf-8")


def _on_build_finished(app: Sphinx, exc) -> None:
    if exc is not None or app.builder.format != "html":
        return
    shutil.copytree(MATHJAX_DIR, Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)
    build.record_chapter_hashes(app.srcdir, app.config.nb_execution_cache_path)
    _link_pdf(Path(app.outdir))
    weights = build.page_weights(Path(app.outdir))
    for docname in REPORT_DOCS:
        page = Path(app.outdir) / f"{docname}.html"
        html = page.read_text(encoding="utf-8")
        page.write_text(html.replace(WEIGHTS_MARKER, build.weights_table_html(weights)), encoding="utf-8")


def _on_env_get_outdated(app, env, added, changed, removed):
    # Le rapport d'exécution et les chapitres dont le code a changé sont relus à chaque build.
    executes = app.config.nb_execution_mode != "off"  # édition PDF : sorties déjà dans les notebooks
    stale = build.stale_chapter_docnames(app.srcdir, app.config.nb_execution_cache_path) if executes else []
    # sphinxcontrib-bibtex ne rafraîchit pas `:all:` quand un .bib est ajouté : on relit la page.
    reports = {
        build.docname(md, app.srcdir)
        for md in (Path(app.srcdir) / "book").glob("*.md")
        if any(d in md.read_text("utf-8") for d in ("{execution-report}", "{bibliography}"))
    }
    return sorted((reports & set(env.found_docs)) | set(stale))


def _on_env_updated(app: Sphinx, env) -> None:
    """Remet les sorties dans le notebook téléchargeable d'un chapitre servi par le cache.

    myst-nb écrit ``_build/jupyter_execute/<doc>.ipynb`` (proposé au
    téléchargement) sans sorties quand il reprend le cache : on le réécrit
    avec les sorties enregistrées.
    """
    import nbformat
    from jupyter_cache import get_cache

    cache_path = app.config.nb_execution_cache_path
    if app.config.nb_execution_mode == "off" or not cache_path or not Path(cache_path).exists():
        return
    cache = get_cache(cache_path)
    for md in build.chapter_sources(Path(app.srcdir) / "book"):
        doc = build.docname(md, app.srcdir)
        if doc not in env.found_docs:
            continue
        try:
            _, nb = cache.merge_match_into_notebook(build.read_md_notebook(md))
        except KeyError:
            continue
        nb.metadata.pop("source_map", None)
        target = Path(app.outdir).parent / "jupyter_execute" / f"{doc}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)


def _dedupe_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Retire les scripts en double (sphinx-thebe ajoute deux fois le sien : erreur JavaScript)."""
    seen, unique = set(), []
    for js in context.get("script_files", []):
        key = (getattr(js, "filename", str(js)) or "", tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


# --- la directive du rapport d'exécution --------------------------------------

class report_placeholder(nodes.General, nodes.Element):
    pass


class ExecutionReport(Directive):
    """Insère le tableau des exécutions des chapitres (rempli à l'écriture)."""

    has_content = False

    def run(self):
        env = self.state.document.settings.env
        REPORT_DOCS.add(env.docname)
        return [report_placeholder()]


def _table(headers: list[str], rows: list[list[str]]) -> nodes.table:
    table = nodes.table(classes=["execution-report"])
    tgroup = nodes.tgroup(cols=len(headers))
    table += tgroup
    for _ in headers:
        tgroup += nodes.colspec(colwidth=1)
    thead = nodes.thead()
    tgroup += thead
    row = nodes.row()
    for h in headers:
        row += nodes.entry("", nodes.paragraph(text=h))
    thead += row
    tbody = nodes.tbody()
    tgroup += tbody
    for cells in rows:
        row = nodes.row()
        for c in cells:
            row += nodes.entry("", nodes.paragraph(text=c))
        tbody += row
    return table


def _on_doctree_resolved(app: Sphinx, doctree, docname: str) -> None:
    for node in list(doctree.findall(report_placeholder)):
        runs = build.load_runs()
        if not runs:
            node.replace_self(nodes.paragraph(text="Aucun chapitre n'a encore été exécuté."))
            continue
        headers = ["Chapitre", "Durée (s)", "Pic mémoire (Mio)", "Profil", "Calcul", "Modèles", "Date", "Commit"]
        rows = [
            [
                r["chapter"], nombre(r["seconds"]), nombre(r["peak_rss_mb"]), r["profile"],
                f"{r.get('precision', '—')} ({r.get('threads', '?')} fils)",
                ", ".join(r["models"].values()) or "—", r["date"], r["commit"],
            ]
            for r in runs
        ]
        libs = sorted({k for r in runs for k in r["versions"]})
        vrows = [[lib] + [r["versions"].get(lib, "—") for r in runs] for lib in libs]
        section = [
            _table(headers, rows),
            nodes.paragraph(text="Versions des bibliothèques principales, chapitre par chapitre :"),
            _table(["Bibliothèque"] + [r["chapter"] for r in runs], vrows),
        ]
        hw = runs[0]["hardware"]
        section.append(nodes.paragraph(
            text=f"Matériel : {hw['cores']} cœurs ({hw['cpu']}), {nombre(hw['ram_gb'], 1)} Gio de RAM, "
                 f"GPU : {hw['gpu'] or 'aucun'} ; Python {runs[0]['python']}."
        ))
        section.append(nodes.paragraph(
            text="Poids de chaque page de ce build (HTML et ressources propres à la page, "
                 "hors ressources partagées du site comme plotly.js, MathJax et le thème) :"
        ))
        section.append(nodes.raw("", WEIGHTS_MARKER, format="html"))
        container = nodes.container()
        container.extend(section)
        node.replace_self(container)


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _on_config_inited)
    app.connect("builder-inited", _on_builder_inited)
    app.connect("env-get-outdated", _on_env_get_outdated)
    app.connect("doctree-resolved", _on_doctree_resolved)
    app.connect("env-updated", _on_env_updated)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("build-finished", _on_build_finished)
    app.add_node(report_placeholder)
    app.add_directive("execution-report", ExecutionReport)
    return {"version": "0.1", "parallel_read_safe": False, "parallel_write_safe": True}
