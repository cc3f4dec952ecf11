"""Tableaux et figures à la française (atelier.runtime.display) et lecture des sorties (tools.outputs)."""

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from atelier.runtime import display
from tools import outputs


def test_auto_decimals_gives_four_significant_digits():
    assert display.auto_decimals([0.80912, 0.7]) == 4
    assert display.auto_decimals([7.2146, 6.9]) == 3
    assert display.auto_decimals([123.45, 99.9]) == 1
    assert display.auto_decimals([1234.5, 999.0]) == 0
    assert display.auto_decimals([887811.0, 2307.0]) == 0  # entiers stockés en flottants
    assert display.auto_decimals([0.00846, 0.0116]) == 5
    assert display.auto_decimals([]) == 0 and display.auto_decimals([float("nan")]) == 0


def test_french_table_writes_numbers_the_french_way():
    df = pd.DataFrame({"modèle": ["a", "b"], "exactitude": [0.8091, np.nan], "paramètres": [112694790, 2307]})
    html = display.french_table(df).to_html()
    assert "0,8091" in html and "112\u202f694\u202f790" in html and "2\u202f307" in html and "—" in html
    assert "0.8091" not in html and "nan" not in html.lower().replace("nan-", "")
    assert outputs.check_text(outputs._html_text(html), "t") == []
    html3 = display.french_table(df, decimals={"exactitude": 1}).to_html()
    assert "0,8" in html3 and "0,8091" not in html3
    assert display.french_table(df).to_html() == display.french_table(df).to_html()  # déterministe
    with pytest.raises(TypeError, match="data"):
        display.french_table([1, 2])
    with pytest.raises(TypeError, match="decimals"):
        display.french_table(df, decimals="3")


def test_install_sets_plotly_separators():
    display.install()
    display.install()
    assert pio.templates.default.split("+").count("atelier") == 1
    fig = go.Figure(go.Bar(x=[1], y=[0.5]))
    assert fig.layout.template.layout.separators == ",\u202f"


@pytest.mark.parametrize("text", ["exactitude 0.809", "24.3% des paires", "24%", "1,234,567 jetons", "perte nan",
                                  "une learning rate faible", "écart -13,0 points", "Python 3.11 mais 0.5 s"])
def test_output_checker_flags_english_numbers(text):
    assert outputs.check_text(text, "t"), text


@pytest.mark.parametrize("text", ["exactitude 0,809", "24,3\u202f% des paires", "torch 2.13.0", "lr = 1e-05",
                                  "Dropout(p=0.1)", "atelier v0.1", "1\u202f234\u202f567 jetons", "gemma-3-270m",
                                  "valeur — manquante", "NaNa", "écart \u221213,0 points", "CC BY-SA 4.0",
                                  "Apache-2.0", "Python 3.11", "du 2026-12-02"])
def test_output_checker_accepts_french_and_code_like_text(text):
    assert outputs.check_text(text, "t") == [], text


def test_output_checker_reads_notebooks_and_skips_tagged_cells(tmp_path):
    def cell(text, tags=()):
        return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": "",
                "outputs": [{"output_type": "stream", "name": "stdout", "text": text}]}

    nb = {"cells": [cell("exactitude 0.5\n"), cell("Linear(in=3, p=0.25)\n0.75\n", ["code-output"]),
                    cell("0,5\n")], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "01_essai.ipynb"
    path.write_text(json.dumps(nb), "utf-8")
    issues = outputs.check_paths([path])
    assert [i.where for i in issues] == ["01_essai.ipynb, cellule 1"]
    assert outputs.main([str(path)]) == 1
    (tmp_path / "vide").mkdir()
    with pytest.raises(ValueError, match="aucune page"):
        outputs.check_paths([tmp_path / "vide"])


def test_latex_table_is_french_and_escaped():
    df = pd.DataFrame({"jeu_de": ["a_b"], "part": [0.125], "n": [2307]})
    tex = display.latex_table(df.style.format({"part": lambda x: f"{100 * x:.1f} %"}))
    assert r"a\_b" in tex and r"12.5 \%" in tex and r"jeu\_de" in tex and r"\toprule" in tex
    tex = display.latex_table(df)
    assert "0,1250" in tex and "2\u202f307" in tex


def test_french_table_escapes_html_but_not_latex():
    """Un texte entre chevrons (« <bos> », l'octet « <C5> ») reste visible : échappé en HTML, tel quel en LaTeX."""
    df = pd.DataFrame({"jeton <b>": ["<bos>", "a & b"], "p": [0.5, 0.25]}, index=["<C5>", "x"])
    page = display.french_table(df).to_html()
    assert "&lt;bos&gt;" in page and "&lt;C5&gt;" in page and "jeton &lt;b&gt;" in page and "a &amp; b" in page
    assert "<bos>" not in page and "<b>" not in page
    assert "0,5" in page
    tex = display.latex_table(display.french_table(df))
    assert "<bos>" in tex and "a \\& b" in tex and "&lt;" not in tex and "<C5>" in tex
