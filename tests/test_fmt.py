"""atelier.runtime.fmt : les nombres du livre à la française (babel, fr_FR)."""

import math

import numpy as np
import pytest

from atelier.runtime.fmt import MISSING, duree, nombre, octets, pourcent

NN = "\u202f"  # espace fine insécable
NB = "\u00a0"  # espace insécable


def test_nombre_thousands_and_decimal_comma():
    assert nombre(1234567.891, 2) == f"1{NN}234{NN}567,89"
    assert nombre(1234567) == f"1{NN}234{NN}567"
    assert nombre(999) == "999" and nombre(0) == "0"
    assert nombre(3.14159, 3) == "3,142"


def test_nombre_negatives_large_and_numpy():
    assert nombre(-1234.5, 1) == f"\u22121{NN}234,5"
    assert nombre(-0.4) == "0" and nombre(-0.04, 1) == "0,0"
    assert nombre(7_241_732_096) == f"7{NN}241{NN}732{NN}096"
    assert nombre(10**15) == NN.join(["1"] + ["000"] * 5)
    assert nombre(np.float32(0.5), 1) == "0,5" and nombre(np.int64(12345)) == f"12{NN}345"


def test_nombre_rounding_is_half_even_on_the_decimal_writing():
    assert nombre(2.5) == "2" and nombre(3.5) == "4"
    assert nombre(0.125, 2) == "0,12" and nombre(2.675, 2) == "2,68"
    assert nombre(9.996, 2) == "10,00"
    assert nombre(1999.5) == f"2{NN}000"


def test_missing_values_show_a_dash():
    for f in (nombre, pourcent, duree, octets):
        assert f(float("nan")) == MISSING == "—"
        assert f(None) == MISSING
        assert f(np.float64("nan")) == MISSING
    assert nombre(math.inf) == "∞" and nombre(-math.inf) == "\u2212∞"


def test_bad_inputs():
    with pytest.raises(TypeError, match="x doit être un nombre réel"):
        nombre("12")
    with pytest.raises(TypeError):
        nombre(True)
    with pytest.raises(ValueError, match="decimals"):
        nombre(1.0, -1)
    with pytest.raises(TypeError, match="decimals"):
        nombre(1.0, 1.5)
    with pytest.raises(ValueError, match="durée finie ≥ 0"):
        duree(-1)
    with pytest.raises(ValueError, match="octets"):
        octets(-5)


def test_pourcent():
    assert pourcent(0.125) == f"12,5{NN}%"
    assert pourcent(0.5, 0) == f"50{NN}%"
    assert pourcent(1) == f"100,0{NN}%"
    assert pourcent(-0.031, 1) == f"\u22123,1{NN}%"
    assert pourcent(12.3456, 2) == f"1{NN}234,56{NN}%"


def test_duree():
    assert duree(0.354) == f"0,35{NB}s"
    assert duree(2.34) == f"2,3{NB}s"
    assert duree(42.4) == f"42{NB}s"
    assert duree(59.6) == f"1{NB}min 00{NB}s"
    assert duree(185) == f"3{NB}min 05{NB}s"
    assert duree(3725) == f"1{NB}h 02{NB}min"
    assert duree(0) == f"0,00{NB}s"


def test_octets():
    assert octets(512) == f"512{NB}o"
    assert octets(1536) == f"1,5{NB}Kio"
    assert octets(12.3 * 2**20) == f"12,3{NB}Mio"
    assert octets(1.25 * 2**30, 2) == f"1,25{NB}Gio"
    assert octets(3 * 2**40) == f"3,0{NB}Tio"
    assert octets(0) == f"0{NB}o"


def test_puissance_writes_scientific_notation_the_french_way():
    from atelier.runtime.fmt import puissance

    assert puissance(2.4e-7) == "2,4\u202f×\u202f10⁻⁷"
    assert puissance(1e-7) == "1,0\u202f×\u202f10⁻⁷"
    assert puissance(-3.25e5, 2) == "\u22123,25\u202f×\u202f10⁵"
    assert puissance(5e-4, 0) == "5\u202f×\u202f10⁻⁴"
    assert puissance(12345.0, 1) == "1,2\u202f×\u202f10⁴"
    assert puissance(0) == "0" and puissance(0.0) == "0"
    assert puissance(float("nan")) == "—" and puissance(float("inf")) == "∞"
    with pytest.raises(TypeError):
        puissance("1e-3")
    with pytest.raises(ValueError):
        puissance(1.0, -1)
