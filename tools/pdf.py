"""L'édition PDF du livre, construite hors ligne à partir des sorties déjà exécutées.

``make pdf`` (ou ``python -m tools.pdf``) :

1. lit, pour chaque chapitre, le notebook exécuté du cache de myst-nb
   (``_build/.jupyter_cache/<profil>``) : rien n'est ré-exécuté ; un chapitre
   absent du cache arrête la commande (lancer d'abord ``make book``) ;
2. exporte chaque figure plotly en PDF vectoriel avec kaleido, qui pilote le
   Chromium de Debian déjà utilisé par les tests du navigateur (rien n'est
   téléchargé) ; les images sont gardées dans ``_build/pdf/figures`` sous
   l'empreinte de la figure : un second build n'exporte rien ;
3. écrit une copie du livre dans ``_build/pdf/src`` (les chapitres en
   ``.ipynb`` avec leurs sorties, exécution désactivée) et la compile avec le
   constructeur LaTeX de Sphinx et XeLaTeX (polyglossia, français) ;
4. copie le résultat dans ``_build/pdf/latelier-des-llm.pdf``.

Ce que le PDF ne peut pas montrer (figures interactives, widgets) est dit dans
la préface de l'édition imprimée (``book/00_preface.md``, section « Le livre en
PDF »).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from atelier.runtime import config
from atelier.runtime.cli import Parser
from tools.build import chapter_sources, execution_cache_dir, read_md_notebook

REPO = config.REPO_ROOT
OUT = config.build_dir() / "pdf"
PDF_NAME = "latelier-des-llm.pdf"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
CHROMIUM = "/usr/bin/chromium"


class PdfError(RuntimeError):
    """Le PDF ne peut pas être construit (cache vide, outil absent…) : message en français."""


def executed_notebooks(cache_dir: Path | None = None, only: list[str] | None = None) -> dict[str, object]:
    """``{nom du chapitre: notebook exécuté}`` tirés du cache ; ``PdfError`` s'il en manque un.

    ``only`` restreint aux chapitres nommés (essais de l'outil ; le livre les prend tous).
    """
    from jupyter_cache import get_cache

    cache_dir = Path(cache_dir or execution_cache_dir())
    if not cache_dir.is_dir():
        raise PdfError(f"Cache d'exécution absent ({cache_dir.name}) : lancez d'abord « make book ».")
    cache = get_cache(str(cache_dir))
    out, missing = {}, []
    for md in chapter_sources():
        if only is not None and md.stem not in only:
            continue
        nb = read_md_notebook(md)
        try:
            _, merged = cache.merge_match_into_notebook(nb)
        except KeyError:
            missing.append(md.stem)
            continue
        out[md.stem] = merged
    if missing:
        raise PdfError(f"Chapitres absents du cache d'exécution : {', '.join(missing)}. "
                       "Lancez d'abord « make book » (le PDF n'exécute rien).")
    return out


def _figure_key(fig: dict) -> str:
    return hashlib.sha1(json.dumps(fig, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plotly_outputs(nb) -> list[dict]:
    """Les sorties d'un notebook qui portent une figure plotly."""
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if PLOTLY_MIME in o.get("data", {})]


def export_figures(notebooks: dict, fig_dir: Path) -> tuple[int, int]:
    """Ajoute ``application/pdf`` à chaque sortie plotly ; renvoie (figures, figures exportées ce coup-ci)."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    pending: dict[str, dict] = {}
    outputs = [o for nb in notebooks.values() for o in plotly_outputs(nb)]
    for o in outputs:
        fig = o["data"][PLOTLY_MIME]
        key = _figure_key(fig)
        if not (fig_dir / f"{key}.pdf").is_file():
            pending[key] = fig
    if pending:
        import kaleido
        import plotly.graph_objects as go

        os.environ.setdefault("BROWSER_PATH", CHROMIUM)
        figs = []
        for key, fig in pending.items():
            f = go.Figure(fig)
            f.update_layout(width=900, height=520)
            figs.append({"fig": f, "path": str(fig_dir / f"{key}.pdf"), "opts": {"format": "pdf"}})
        try:
            kaleido.write_fig_from_object_sync(figs)
        except Exception as exc:  # noqa: BLE001 - Chromium absent, etc. : message clair
            raise PdfError(f"Export des figures impossible (kaleido et {CHROMIUM}) : {exc}") from exc
    import base64

    for o in outputs:
        key = _figure_key(o["data"][PLOTLY_MIME])
        o["data"]["application/pdf"] = base64.b64encode((fig_dir / f"{key}.pdf").read_bytes()).decode("ascii")
    return len(outputs), len(pending)


def _latex_config(commit: str) -> dict:
    title = "L'atelier des LLM"
    return {
        "latex_engine": "xelatex",
        "use_jupyterbook_latex": True,
        "latex_documents": {"targetname": "livre.tex"},
    }, {
        "latex_elements": {
            "papersize": "a4paper",
            "pointsize": "10pt",
            "fontpkg": r"\usepackage{fontspec}\setmainfont{DejaVu Serif}\setsansfont{DejaVu Sans}"
                       r"\setmonofont[Scale=0.85]{DejaVu Sans Mono}",
            "polyglossia": r"\usepackage{polyglossia}\setmainlanguage{french}",
            "babel": "",
            # Caractères hors des polices DejaVu : idéogrammes (Droid Sans Fallback, via ucharclasses) et ⏎.
            "preamble": "\n".join([
                r"\usepackage{booktabs}",
                r"\PassOptionsToPackage{CJK}{ucharclasses}",
                r"\newfontfamily\atelierCJK{Droid Sans Fallback}",
                r"\newfontfamily\atelierSymboles{DejaVu Sans}",
                r"\usepackage{newunicodechar}",
                r"\newunicodechar{⏎}{{\atelierSymboles ⏎}}",
                r"\AtBeginDocument{\setTransitionsForCJK{\begingroup\atelierCJK}{\endgroup}}",
            ]),
            "sphinxsetup": "verbatimwrapslines=true, verbatimforcewraps=true",
            "extraclassoptions": "openany,oneside",
        },
        "latex_show_urls": "footnote",
        "latex_use_xindy": False,  # makeindex (TeX Live de base) : xindy n'est pas dans les paquets installés
        # Page de titre : la date devient l'édition (commit) et la licence.
        "today": f"Édition PDF du commit {commit} — textes CC BY 4.0, code MIT",
        # jupyterBook.cls demande bbm (texlive-fonts-extra, 1,4 Go) pour \mathbbm : un substitut sur amssymb.
        "latex_additional_files": ["bbm.sty"],
        "latex_documents": [("book/00_preface", "livre.tex", title, "Les auteurs de L'atelier des LLM", "jupyterBook")],
    }


def write_source_tree(notebooks: dict, src: Path, commit: str, only: list[str] | None = None) -> None:
    """Copie du livre pour LaTeX : chapitres en ``.ipynb`` exécutés, autres pages telles quelles."""
    import nbformat

    if src.exists():
        shutil.rmtree(src)
    (src / "book").mkdir(parents=True)
    shutil.copytree(REPO / "book" / "refs", src / "book" / "refs")
    (src / "bbm.sty").write_text("\\ProvidesPackage{bbm}[2026/12/02 substitut (atelier)]\n\\RequirePackage{amssymb}\n"
                                 "\\providecommand{\\mathbbm}[1]{\\mathbb{#1}}\n", "utf-8")
    chapters = {md.stem for md in chapter_sources()}
    for md in sorted((REPO / "book").glob("*.md")):
        if md.stem in chapters and md.stem not in notebooks:
            continue  # chapitre écarté par only
        if md.stem in notebooks:
            nb = copy.deepcopy(notebooks[md.stem])
            nbformat.write(nb, src / "book" / f"{md.stem}.ipynb")
        else:
            shutil.copy(md, src / "book" / md.name)
    cfg = yaml.safe_load((REPO / "_config.yml").read_text("utf-8"))
    cfg["execute"] = {"execute_notebooks": "off"}
    cfg["exclude_patterns"] = ["_build", "**.ipynb_checkpoints"]
    latex, sphinx_extra = _latex_config(commit)
    cfg["latex"] = latex
    cfg.setdefault("sphinx", {}).setdefault("config", {}).update(sphinx_extra)
    (src / "_config.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), "utf-8")
    toc = yaml.safe_load((REPO / "_toc.yml").read_text("utf-8"))
    toc["chapters"] = [c for c in toc["chapters"] if Path(c["file"]).name not in chapters - set(notebooks)]
    (src / "_toc.yml").write_text(yaml.safe_dump(toc, allow_unicode=True, sort_keys=False), "utf-8")


def build(out: Path = OUT, only: list[str] | None = None) -> Path:
    """Construit le PDF ; renvoie son chemin."""
    if shutil.which("xelatex") is None or shutil.which("latexmk") is None:
        raise PdfError("XeLaTeX ou latexmk absent : installez les paquets Debian texlive-xetex, "
                       "texlive-lang-french, texlive-latex-extra et latexmk (make pdf le fait quand il est root).")
    t0 = time.perf_counter()
    notebooks = executed_notebooks(only=only)
    n_figs, exported = export_figures(notebooks, out / "figures")
    commit = _commit()
    src = out / "src"
    write_source_tree(notebooks, src, commit, only)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    jb = Path(sys.executable).parent / "jupyter-book"
    run = subprocess.run([str(jb), "build", str(src), "--builder", "pdflatex", "--path-output", str(out)],
                         env=env, capture_output=True, text=True)
    log = out / "build.log"
    log.write_text(run.stdout + run.stderr, "utf-8")
    pdf = out / "_build" / "latex" / "livre.pdf"
    if run.returncode != 0 or not pdf.is_file():
        tail = "\n".join((run.stdout + run.stderr).splitlines()[-30:])
        raise PdfError(f"La compilation LaTeX a échoué (journal complet : {log}) :\n{tail}")
    target = out / PDF_NAME
    shutil.copy(pdf, target)
    print(f"[atelier] PDF : {target} ({target.stat().st_size / 2**20:.1f} Mio, {n_figs} figures dont "
          f"{exported} exportées, {time.perf_counter() - t0:.0f} s).")
    return target


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "hors dépôt"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m tools.pdf", description="Édition PDF du livre, depuis le cache d'exécution.")
    parser.add_argument("--only", nargs="+", metavar="CHAPITRE", help="seulement ces chapitres (essais)")
    args = parser.parse_args(argv)
    try:
        build(only=args.only)
    except PdfError as exc:
        print(f"[atelier] {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
