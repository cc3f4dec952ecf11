"""Réglages communs des tests : hors ligne, graines, dossiers de fixtures ignorés."""

import os

import pytest

# Les notebooks de fixtures (dont un qui échoue exprès) ne sont pas des tests.
collect_ignore_glob = ["fixtures/*"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _seed():
    from atelier.runtime.config import seed_everything

    seed_everything(0)
