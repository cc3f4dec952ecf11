"""Validation des arguments des fonctions publiques d'``atelier`` : un message clair, en français.

Chaque fonction vérifie un argument et le renvoie normalisé (``int`` ou
``float`` Python), ou lève :

- ``TypeError`` quand le **type** ne convient pas (une chaîne, un booléen, un
  flottant là où il faut un entier…) ;
- ``ValueError`` quand la **valeur** sort du domaine (négative, NaN, hors de
  l'intervalle, hors de la liste…).

Le message nomme le paramètre, dit ce qui est accepté et ce qui a été reçu :
« temperature doit être un nombre réel fini ≥ 0 ; reçu nan. » Les scalaires
NumPy (``np.float32(0.7)``, ``np.int64(3)``) valent les nombres Python ; un
booléen n'est jamais un nombre.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

__all__ = ["check_int", "check_float", "check_choice", "check_type"]

_NBSP = "\u00a0"


def _shown(value) -> str:
    """``repr`` lisible, scalaires NumPy compris (``nan`` plutôt que ``np.float32(nan)``)."""
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = item()
    return repr(value)


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _domain(min, max, min_open: bool, max_open: bool) -> str:
    if min is not None and max is not None:
        return f" dans {']' if min_open else '['}{_num(min)}, {_num(max)}{'[' if max_open else ']'}"
    if min is not None:
        return f" {'>' if min_open else '≥'} {_num(min)}"
    if max is not None:
        return f" {'<' if max_open else '≤'} {_num(max)}"
    return ""


def _is_bool(value) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def _received(value) -> str:
    return f"{_NBSP}; reçu {_shown(value)}"


def _received_type(value) -> str:
    return f"{_NBSP}; reçu {type(value).__name__} ({_shown(value)})"


def check_int(name: str, value, *, min: int | None = None, max: int | None = None) -> int:
    """Entier (Python ou NumPy, pas un booléen) entre ``min`` et ``max`` inclus ; renvoie un ``int``."""
    expected = f"un entier{_domain(min, max, False, False)}"
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} doit être {expected}{_received_type(value)}.")
    value = int(value)
    if (min is not None and value < min) or (max is not None and value > max):
        raise ValueError(f"{name} doit être {expected}{_received(value)}.")
    return value


def check_float(name: str, value, *, min: float | None = None, max: float | None = None, finite: bool = True,
                min_open: bool = False, max_open: bool = False) -> float:
    """Nombre réel (entier ou flottant, Python ou NumPy, pas un booléen) dans le domaine donné ; renvoie un ``float``.

    ``min_open``/``max_open`` : borne exclue (``> min``, ``< max``). NaN est
    toujours refusé ; l'infini seulement avec ``finite=True`` (le défaut).
    """
    kind = "un nombre réel fini" if finite else "un nombre réel"
    expected = f"{kind}{_domain(min, max, min_open, max_open)}"
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} doit être {expected}{_received_type(value)}.")
    number = float(value)
    bad = math.isnan(number) or (finite and math.isinf(number))
    if min is not None:
        bad = bad or (number <= min if min_open else number < min)
    if max is not None:
        bad = bad or (number >= max if max_open else number > max)
    if bad:
        raise ValueError(f"{name} doit être {expected}{_received(value)}.")
    return number


def check_choice(name: str, value, choices: Iterable):
    """``value`` doit être l'une des ``choices`` (comparaison par égalité) ; la renvoie."""
    choices = tuple(choices)
    try:
        ok = value in choices
    except TypeError:  # valeur non comparable (liste dans un ensemble…)
        ok = False
    if not ok:
        accepted = ", ".join(map(repr, choices))
        raise ValueError(f"{name} doit valoir l'une des valeurs {accepted}{_received(value)}.")
    return value


_TYPE_NAMES = {str: "str (chaîne de caractères)", bool: "bool (booléen)", int: "int (entier)", float: "float (réel)",
               list: "list (liste)", dict: "dict (dictionnaire)"}


def check_type(name: str, value, types: type | tuple[type, ...]):
    """``value`` doit être une instance de ``types`` ; la renvoie, ou lève ``TypeError``."""
    types = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, types):
        accepted = " ou ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
        raise TypeError(f"{name} doit être de type {accepted}{_NBSP}; reçu {type(value).__name__}.")
    return value
