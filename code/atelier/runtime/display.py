"""Tableaux et figures à la française, dans tous les chapitres, par défaut.

:func:`install` est appelée par :func:`atelier.runtime.book.setup` au début de
chaque chapitre :

- les ``DataFrame`` et ``Series`` pandas s'affichent dans Jupyter (et donc sur
  le site) à travers :func:`french_table` : virgule décimale, espace fine
  insécable entre les milliers, « — » pour une valeur manquante, entiers sans
  « .0 » ; le nombre de décimales est choisi par colonne (quatre chiffres
  significatifs pour une valeur typique de la colonne) ;
- les figures plotly reçoivent ``layout.separators = ",\u202f"`` (virgule
  décimale, espace fine pour les milliers), par le modèle ``atelier`` ajouté au
  modèle par défaut.

Un chapitre qui veut un format précis le donne à :func:`french_table`
(``decimals={"exactitude": 3}``) ou utilise :mod:`atelier.runtime.fmt`.
"""

from __future__ import annotations

import hashlib
import html
import math
import numbers

import numpy as np

from atelier.runtime.fmt import MISSING, nombre

__all__ = ["auto_decimals", "french_table", "latex_table", "install"]

SEPARATORS = ",\u202f"  # plotly : décimale puis milliers


def auto_decimals(values) -> int:
    """Décimales pour écrire des valeurs typiques de ``values`` avec quatre chiffres significatifs (0 à 6)."""
    x = np.asarray([v for v in values if isinstance(v, numbers.Real) and not isinstance(v, bool)], dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0 or np.all(x == np.round(x)):
        return 0
    typical = float(np.median(np.abs(x[x != 0]))) if np.any(x != 0) else 0.0
    if typical == 0:
        return 0
    return int(min(max(3 - math.floor(math.log10(typical)), 0), 6))


def _cell(value, decimals: int) -> str:
    if value is None or isinstance(value, bool | np.bool_):
        return MISSING if value is None else str(value)
    if isinstance(value, numbers.Integral):
        return nombre(int(value))
    if isinstance(value, numbers.Real):
        return nombre(float(value), decimals)
    return str(value)


def french_table(data, decimals: dict | int | None = None, index: bool = True):
    """Un ``Styler`` pandas qui écrit les nombres de ``data`` (DataFrame ou Series) à la française.

    ``decimals`` : un entier pour toutes les colonnes, ou un dictionnaire
    ``{colonne: décimales}`` ; les colonnes absentes sont réglées par
    :func:`auto_decimals`. ``index=False`` masque l'index. Les textes (cellules,
    index, en-têtes) sont échappés pour le HTML, comme dans l'affichage par
    défaut de pandas : « <bos> » reste visible sur la page.
    """
    import pandas as pd

    if isinstance(data, pd.Series):
        data = data.to_frame()
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data doit être un DataFrame ou une Series pandas ; reçu : {type(data).__name__}.")
    if decimals is not None and not isinstance(decimals, dict | int):
        raise TypeError(f"decimals doit être un entier, un dictionnaire ou None ; reçu : {type(decimals).__name__}.")
    from atelier.runtime.checks import check_int

    if isinstance(decimals, int):
        decimals = check_int("decimals", decimals, min=0, max=12)
    elif isinstance(decimals, dict):
        decimals = {k: check_int(f"decimals[{k!r}]", v, min=0, max=12) for k, v in decimals.items()}
    per_column = {}
    for col in data.columns:
        if isinstance(decimals, int):
            per_column[col] = decimals
        elif isinstance(decimals, dict) and col in decimals:
            per_column[col] = decimals[col]
        else:
            per_column[col] = auto_decimals(data[col].tolist()) if data[col].dtype.kind in "fiuc" else 0
    styler = data.style.set_uuid(hashlib.sha1(repr(data).encode()).hexdigest()[:8])  # même page à chaque build
    styler = styler.set_table_attributes('class="dataframe"')
    for col, d in per_column.items():
        styler = styler.format(lambda v, d=d: MISSING if _missing(v) else _cell(v, d), subset=[col], escape="html")
    styler = styler.format_index(lambda v: _cell(v, 0) if not isinstance(v, float) else _cell(v, 2), axis=0,
                                 escape="html")
    styler = styler.format_index(str, axis=1, escape="html")
    if not index:
        styler = styler.hide(axis="index")
    return styler


def _missing(v) -> bool:
    try:
        return v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isnan(v))
    except TypeError:
        return False


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(text))


def latex_table(styler) -> str:
    """Le tableau d'un ``Styler`` (ou d'un DataFrame) en LaTeX (booktabs), pour l'édition PDF du livre."""
    import pandas as pd

    if isinstance(styler, pd.DataFrame | pd.Series):
        styler = french_table(styler)
    shown = styler.data.astype(object)  # copie : les cellules reçoivent leur texte affiché
    ctx = styler._translate(False, False)  # cellules telles que le Styler les affiche (formats compris)
    for r, row in enumerate(ctx["body"]):
        cells = [c for c in row if c.get("type") == "td"]
        for j, cell in enumerate(cells[: shown.shape[1]]):
            shown.iat[r, j] = html.unescape(str(cell.get("display_value", "")))  # texte, pas HTML
    shown.columns = [_latex_escape(c) for c in shown.columns]
    shown.index = [_latex_escape(i) for i in shown.index]
    return shown.map(_latex_escape).to_latex(escape=False)


def install() -> None:
    """Tableaux pandas et figures plotly à la française pour la suite de l'exécution (idempotent)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    if "atelier" not in pio.templates:
        pio.templates["atelier"] = go.layout.Template(layout={"separators": SEPARATORS})
    base = pio.templates.default or "plotly"
    if "atelier" not in base.split("+"):
        pio.templates.default = f"{base}+atelier"
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython est une dépendance de Jupyter
        return
    shell = get_ipython()
    if shell is None:
        return
    import pandas as pd

    pd.set_option("styler.render.max_rows", 60)  # comme l'affichage par défaut de pandas
    pd.set_option("styler.render.max_columns", 30)
    html_formatter = shell.display_formatter.formatters["text/html"]
    html_formatter.for_type(pd.DataFrame, lambda df: french_table(df).to_html())
    html_formatter.for_type(pd.Series, lambda s: french_table(s).to_html())
    from pandas.io.formats.style import Styler

    latex = shell.display_formatter.formatters["text/latex"]  # l'édition PDF lit cette sortie
    for kind in (pd.DataFrame, pd.Series, Styler):
        latex.for_type(kind, latex_table)
