"""Lignes de commande du livre, en français : messages d'erreur et aide d'``argparse`` traduits.

Utilisé par les commandes ``python -m atelier.embeddings.serve``,
``python -m atelier.assets.models`` et ``python -m atelier.lora_nf4.sft``
(chapitres 02 et 04) et par l'outillage du livre (``tools``). ``argparse``
produit ses messages en anglais (« invalid int value ») ; :class:`Parser` les
traduit pendant l'analyse et l'affichage de l'aide, sans toucher aux autres
analyseurs du processus.
"""

from __future__ import annotations

import argparse
import contextlib

__all__ = ["Parser"]

_FR = {
    "usage: ": "utilisation : ",
    "%(prog)s: error: %(message)s\n": "%(prog)s : erreur : %(message)s\n",
    "argument %(argument_name)s: %(message)s": "argument %(argument_name)s : %(message)s",
    "invalid %(type)s value: %(value)r": "valeur invalide (type attendu : %(type)s) : %(value)r",
    "invalid choice: %(value)r (choose from %(choices)s)": "choix invalide : %(value)r (valeurs acceptées : %(choices)s)",
    "the following arguments are required: %s": "arguments obligatoires manquants : %s",
    "unrecognized arguments: %s": "arguments non reconnus : %s",
    "expected one argument": "une valeur attendue",
    "expected at most one argument": "au plus une valeur attendue",
    "expected at least one argument": "au moins une valeur attendue",
    "not allowed with argument %s": "incompatible avec l'argument %s",
    "ambiguous option: %(option)s could match %(matches)s": "option ambiguë : %(option)s peut désigner %(matches)s",
    "show this help message and exit": "afficher cette aide et quitter",
    "positional arguments": "arguments positionnels\u00a0",  # argparse ajoute « : »
    "options": "options\u00a0",
}


def _translate(message: str) -> str:
    return _FR.get(message, message)


@contextlib.contextmanager
def _french():
    english = argparse._
    argparse._ = _translate
    try:
        yield
    finally:
        argparse._ = english


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` dont les messages (erreurs, aide) sont en français."""

    def __init__(self, *args, **kwargs):
        with _french():
            super().__init__(*args, **kwargs)

    def parse_args(self, *args, **kwargs):
        with _french():
            return super().parse_args(*args, **kwargs)

    def parse_known_args(self, *args, **kwargs):
        with _french():
            return super().parse_known_args(*args, **kwargs)

    def format_help(self) -> str:
        with _french():
            return super().format_help()

    def format_usage(self) -> str:
        with _french():
            return super().format_usage()

    def error(self, message: str):
        with _french():
            super().error(message)
