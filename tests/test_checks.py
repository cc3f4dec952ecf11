"""atelier.runtime.checks : TypeError pour un mauvais type, ValueError pour une mauvaise valeur, message en français."""

import math

import numpy as np
import pytest

from atelier.runtime.checks import check_choice, check_float, check_int, check_type


def test_check_int_accepts_python_and_numpy_integers():
    assert check_int("n", 3) == 3
    assert check_int("n", np.int64(3), min=1) == 3 and type(check_int("n", np.int32(3))) is int
    assert check_int("n", 0, min=0, max=0) == 0


@pytest.mark.parametrize("value", [True, np.bool_(True), 2.0, np.float32(2), "2", None])
def test_check_int_refuses_other_types(value):
    with pytest.raises(TypeError, match=r"^n doit être un entier ≥ 1\u00a0; reçu "):
        check_int("n", value, min=1)


def test_check_int_message_names_bounds_and_value():
    with pytest.raises(ValueError, match=r"^top_k doit être un entier ≥ 0\u00a0; reçu -1\.$"):
        check_int("top_k", -1, min=0)
    with pytest.raises(ValueError, match=r"dans \[3, 8\]\u00a0; reçu 9\."):
        check_int("max_length", np.int64(9), min=3, max=8)
    with pytest.raises(ValueError, match=r"≤ 4"):
        check_int("k", 5, max=4)


def test_check_float_accepts_numpy_scalars_and_ints():
    t = check_float("temperature", np.float32(0.7), min=0)
    assert type(t) is float and math.isclose(t, 0.7, rel_tol=1e-6)
    assert check_float("x", 1) == 1.0 and check_float("x", np.int64(2)) == 2.0
    assert check_float("x", math.inf, finite=False) == math.inf


def test_check_float_example_message():
    with pytest.raises(ValueError) as err:
        check_float("temperature", float("nan"), min=0)
    assert str(err.value) == "temperature doit être un nombre réel fini ≥ 0\u00a0; reçu nan."
    with pytest.raises(ValueError, match=r"reçu nan\.$"):
        check_float("temperature", np.float32("nan"), min=0)
    with pytest.raises(ValueError, match="nombre réel ≥ 0"):
        check_float("x", math.nan, min=0, finite=False)   # NaN toujours refusé
    with pytest.raises(ValueError, match="fini"):
        check_float("x", -math.inf)


def test_check_float_open_and_closed_bounds():
    assert check_float("top_p", 1.0, min=0, max=1, min_open=True) == 1.0
    with pytest.raises(ValueError, match=r"^top_p doit être un nombre réel fini dans \]0, 1\]\u00a0; reçu 0\.$"):
        check_float("top_p", 0, min=0, max=1, min_open=True)
    with pytest.raises(ValueError, match=r"dans \[0, 1\["):
        check_float("dropout", 1.0, min=0, max=1, max_open=True)
    with pytest.raises(ValueError, match="> 0"):
        check_float("alpha", 0.0, min=0, min_open=True)
    with pytest.raises(ValueError, match="< 2"):
        check_float("x", 2.5, max=2, max_open=True)


@pytest.mark.parametrize("value", [True, "0.7", None, [0.7], 1 + 2j])
def test_check_float_refuses_other_types(value):
    with pytest.raises(TypeError, match=r"^temperature doit être un nombre réel fini\u00a0; reçu "):
        check_float("temperature", value)


def test_check_choice():
    assert check_choice("task", "SEQ_CLS", ("SEQ_CLS", "CAUSAL_LM")) == "SEQ_CLS"
    with pytest.raises(ValueError, match=r"^task doit valoir l'une des valeurs 'SEQ_CLS', 'CAUSAL_LM'\u00a0; reçu 'seq'\.$"):
        check_choice("task", "seq", ("SEQ_CLS", "CAUSAL_LM"))
    with pytest.raises(ValueError, match="reçu \\['a'\\]"):
        check_choice("task", ["a"], {"a", "b"})


def test_check_type():
    assert check_type("prompt", "bonjour", str) == "bonjour"
    assert check_type("x", 3, (int, float)) == 3
    with pytest.raises(TypeError, match=r"^prompt doit être de type str \(chaîne de caractères\)\u00a0; reçu int\.$"):
        check_type("prompt", 3, str)
    with pytest.raises(TypeError, match=r"de type int \(entier\) ou float \(réel\)\u00a0; reçu str"):
        check_type("x", "3", (int, float))


# --------------------------------------------------------------------------- lignes de commande en français
def test_cli_parser_speaks_french_and_leaves_argparse_alone(capsys):
    import argparse

    from atelier.runtime.cli import Parser

    parser = Parser(prog="essai")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["a", "b"])
    for argv, expected in ((["--port", "abc"], "valeur invalide (type attendu : int) : 'abc'"),
                           ([], "arguments obligatoires manquants : --port"),
                           (["--port", "1", "--mode", "c"], "choix invalide : 'c'"),
                           (["--port", "1", "--oups"], "arguments non reconnus : --oups")):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("utilisation : essai") and f"essai : erreur : " in err and expected in err, err
    assert "afficher cette aide et quitter" in parser.format_help()
    english = argparse.ArgumentParser(prog="anglais")
    assert english.format_usage().startswith("usage: ")  # les autres analyseurs restent tels quels
