"""Nombres à la française pour les sorties des chapitres (``babel.numbers``, locale ``fr_FR``).

- :func:`nombre` : espace fine insécable (U+202F) entre les milliers, virgule
  décimale : ``nombre(1234567.891, 2)`` → « 1 234 567,89 » ;
- :func:`pourcent` : une fraction en pourcentage, espace fine avant « % » :
  ``pourcent(0.125)`` → « 12,5 % » ;
- :func:`duree` : une durée en secondes, « 2,3 s », « 42 s », « 3 min 05 s », « 1 h 02 min » ;
- :func:`octets` : une taille en unités binaires, « 512 o », « 1,5 Kio », « 12,3 Mio », « 1,2 Gio » ;
- :func:`puissance` : l'écriture scientifique, ``puissance(2.4e-7)`` → « 2,4 × 10⁻⁷ » (0 → « 0 »).

Arrondi : au plus proche, à égalité vers le chiffre pair, sur l'écriture
décimale du nombre (celle de ``str(x)`` : 2.675 → « 2,68 »). Le signe moins
est celui de CLDR pour le français (« - »).

Valeur manquante : NaN (ou ``None``) s'affiche « — » (tiret cadratin), pour
qu'un tableau ou une phrase ne montre jamais « nan » ; l'infini s'affiche « ∞ ».
Un booléen, une chaîne ou un nombre de décimales négatif lèvent ``TypeError``
ou ``ValueError``.
"""

from __future__ import annotations

import math
import numbers

from babel.numbers import format_decimal

from atelier.runtime.checks import check_float, check_int

__all__ = ["MISSING", "nombre", "pourcent", "duree", "octets", "puissance"]

LOCALE = "fr_FR"
MISSING = "—"  # ce qu'affiche une valeur manquante (NaN, None)
NNBSP = "\u202f"  # espace fine insécable : milliers, avant « % »
NBSP = "\u00a0"  # espace insécable : entre un nombre et son unité
MINUS = "\u2212"  # signe moins typographique : « −3,1 % »
_EXPONENTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")  # exposants en chiffres supérieurs


def _real(name: str, x):
    """``None`` si la valeur manque (None, NaN), sinon un ``float`` (infini compris)."""
    if x is None:
        return None
    if isinstance(x, numbers.Real) and not isinstance(x, bool) and type(x).__name__ != "bool_" and math.isnan(x):
        return None
    return check_float(name, x, finite=False)


def nombre(x, decimals: int = 0) -> str:
    """``x`` avec ``decimals`` décimales, à la française : « 1 234 567,89 » ; NaN → « — »."""
    decimals = check_int("decimals", decimals, min=0, max=20)
    value = _real("x", x)
    if value is None:
        return MISSING
    if math.isinf(value):
        return "∞" if value > 0 else MINUS + "∞"
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    text = format_decimal(value, format=pattern, locale=LOCALE).replace("\u00a0", NNBSP)
    if text.startswith("-"):
        # Signe moins typographique (U+2212) ; un nombre arrondi à zéro n'a pas de signe (« 0 », pas « −0 »).
        text = text[1:] if not text.strip("-0,") else MINUS + text[1:]
    return text


def pourcent(x, decimals: int = 1) -> str:
    """La fraction ``x`` en pourcentage : ``pourcent(0.125)`` → « 12,5 % » (espace fine avant %) ; NaN → « — »."""
    value = _real("x", x)
    if value is None:
        return MISSING
    return f"{nombre(100 * value, decimals)}{NNBSP}%"


def duree(seconds) -> str:
    """Une durée lisible : « 0,35 s », « 2,3 s », « 42 s », « 3 min 05 s », « 1 h 02 min » ; NaN → « — »."""
    value = _real("seconds", seconds)
    if value is None:
        return MISSING
    if value < 0 or math.isinf(value):
        raise ValueError(f"seconds doit être une durée finie ≥ 0{NBSP}; reçu {seconds!r}.")
    if value < 1:
        return f"{nombre(value, 2)}{NBSP}s"
    if value < 10:
        return f"{nombre(value, 1)}{NBSP}s"
    total = round(value)
    if total < 60:
        return f"{total}{NBSP}s"
    if total < 3600:
        return f"{total // 60}{NBSP}min {total % 60:02d}{NBSP}s"
    minutes = round(value / 60)
    return f"{minutes // 60}{NBSP}h {minutes % 60:02d}{NBSP}min"


_BINARY_UNITS = ("o", "Kio", "Mio", "Gio", "Tio", "Pio")


def octets(n, decimals: int = 1) -> str:
    """Une taille en unités binaires (1 Kio = 1 024 o) : « 512 o », « 1,5 Kio », « 12,3 Mio » ; NaN → « — »."""
    value = _real("n", n)
    if value is None:
        return MISSING
    if value < 0 or math.isinf(value):
        raise ValueError(f"n doit être un nombre d'octets fini ≥ 0{NBSP}; reçu {n!r}.")
    power = 0
    while value >= 1024 and power < len(_BINARY_UNITS) - 1:
        value /= 1024
        power += 1
    return f"{nombre(value, 0 if power == 0 else decimals)}{NBSP}{_BINARY_UNITS[power]}"


def puissance(x, decimals: int = 1) -> str:
    """Écriture scientifique à la française : ``puissance(2.4e-7)`` → « 2,4 × 10⁻⁷ » ; 0 → « 0 » ; NaN → « — »."""
    decimals = check_int("decimals", decimals, min=0, max=20)
    value = _real("x", x)
    if value is None:
        return MISSING
    if value == 0 or math.isinf(value):
        return nombre(value)
    mantissa, exponent = f"{value:.{decimals}e}".split("e")
    return f"{nombre(float(mantissa), decimals)}{NNBSP}×{NNBSP}10{str(int(exponent)).translate(_EXPONENTS)}"
