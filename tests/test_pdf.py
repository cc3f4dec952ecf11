"""L'édition PDF (``make pdf``, :mod:`tools.pdf`) : construite par ``make test`` après le site, testée ici."""

import re
from pathlib import Path

import pytest
import yaml

from atelier.runtime import config
from tools import pdf

pytestmark = pytest.mark.site

OUT = config.build_dir() / "pdf"
PDF = OUT / pdf.PDF_NAME
HTML = config.build_dir() / "html"


@pytest.fixture(scope="module")
def reader():
    pypdf = pytest.importorskip("pypdf")
    if not PDF.is_file():
        pytest.fail(f"{PDF} absent : make test construit le PDF après le site (python -m tools.pdf).")
    return pypdf.PdfReader(str(PDF))


def _outline_titles(outline) -> list[str]:
    titles = []
    for item in outline:
        if isinstance(item, list):
            titles += _outline_titles(item)
        else:
            titles.append(item.title)
    return titles


def test_pdf_has_every_chapter_in_its_outline(reader):
    titles = " | ".join(_outline_titles(reader.outline)).replace("\u2019", "'")  # LaTeX : apostrophe typographique
    toc = yaml.safe_load((config.REPO_ROOT / "_toc.yml").read_text("utf-8"))
    for entry in toc["chapters"]:
        md = config.REPO_ROOT / f"{entry['file']}.md"
        title = next(line[2:].strip() for line in md.read_text("utf-8").splitlines() if line.startswith("# "))
        assert title.split(" :")[0].split(" ?")[0][:25] in titles, f"« {title} » absent du sommaire du PDF : {titles}"


def test_pdf_text_has_no_unresolved_reference_and_is_french(reader):
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    assert "??" not in text, "référence non résolue (??) dans le PDF"
    assert "Table des matières" in text and "Glossaire" in text
    assert len(reader.pages) > 50


def test_latex_log_has_no_missing_glyph():
    log = OUT / "_build" / "latex" / "livre.log"
    assert log.is_file()
    missing = sorted(set(re.findall(r"Missing character: There is no (.+?) in font", log.read_text("utf-8", "replace"))))
    assert not missing, f"glyphes manquants : {missing}"


def test_every_site_figure_has_a_static_counterpart():
    site_figures = sum(page.read_text("utf-8").count("Plotly.newPlot(") for page in HTML.rglob("[0-9][0-9]_*.html"))
    tex = (OUT / "_build" / "latex" / "livre.tex").read_text("utf-8")
    images = [name for name in re.findall(r"\\sphinxincludegraphics(?:\[[^\]]*\])?\{\{?([^}]+)\}", tex)
              if name.endswith(".pdf") or "}" not in name]
    assert site_figures > 0
    assert len(images) >= site_figures, f"{site_figures} figures sur le site, {len(images)} images dans le PDF"


def test_warm_pdf_executes_nothing_and_exports_nothing():
    cfg = yaml.safe_load((OUT / "src" / "_config.yml").read_text("utf-8"))
    assert cfg["execute"]["execute_notebooks"] == "off"
    notebooks = pdf.executed_notebooks()
    n, exported = pdf.export_figures(notebooks, OUT / "figures")
    assert n > 0 and exported == 0, "un second passage ne doit exporter aucune figure (cache des images)"


def test_pdf_size_and_site_link():
    assert PDF.stat().st_size < 30 * 2**20
    assert (HTML / pdf.PDF_NAME).is_file(), "le PDF est publié avec le site"
    page = (HTML / "book" / "01_anatomie.html").read_text("utf-8")
    assert 'href="../latelier-des-llm.pdf"' in page


def test_pdf_refuses_an_empty_cache(tmp_path):
    with pytest.raises(pdf.PdfError, match="make book"):
        pdf.executed_notebooks(tmp_path / "absent")
