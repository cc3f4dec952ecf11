"""Réglages communs des tests : hors ligne, graines, dossiers de fixtures ignorés, petits modèles partagés.

Petits modèles aléatoires (quelques dizaines de milliers de paramètres, construits
sans téléchargement) :

- ``tiny_models`` : constructeurs ``gpt2``, ``llama`` et ``gemma`` de modèles
  causaux en mode évaluation, graine 0 ; chaque argument nommé remplace un
  réglage de la configuration (``tiny_models.gpt2(n_layer=3)``) ;
- ``tiny_chat_path`` : un modèle de conversation Llama minuscule sur disque,
  avec tokeniseur et chat template (:func:`atelier.lora_nf4.sft.make_tiny_chat_model`,
  qui sert aussi au chapitre 04), construit une fois par session.
"""

import os
from types import SimpleNamespace

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


def tiny_gpt2(**overrides):
    """GPT-2 minuscule (vocabulaire 128, 2 couches de dimension 32, 4 têtes, 64 positions)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(**{"vocab_size": 128, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64, **overrides})
    return GPT2LMHeadModel(cfg).eval()


def tiny_llama(**overrides):
    """Llama minuscule (vocabulaire 128, 2 couches de dimension 32, 4 têtes dont 2 clés/valeurs)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(**{"vocab_size": 128, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
                         **overrides})
    return LlamaForCausalLM(cfg).eval()


def tiny_gemma(**overrides):
    """Gemma 3 minuscule : une couche à fenêtre glissante (4 jetons) puis une couche globale."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(**{"vocab_size": 128, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
                              "query_pre_attn_scalar": 8, "sliding_window": 4, "max_position_embeddings": 128,
                              "layer_types": ["sliding_attention", "full_attention"], **overrides})
    return Gemma3ForCausalLM(cfg).eval()


@pytest.fixture(scope="session")
def tiny_models():
    return SimpleNamespace(gpt2=tiny_gpt2, llama=tiny_llama, gemma=tiny_gemma)


@pytest.fixture(scope="session")
def tiny_chat_path(tmp_path_factory):
    from atelier.lora_nf4.sft import make_tiny_chat_model

    return make_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat"))


# Chromium de Debian (make browser), piloté par Playwright : aucun navigateur n'est téléchargé.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


@pytest.fixture
def chromium_page():
    """Une page de Chromium sans écran ; le test est sauté si Chromium ou Playwright manque."""
    from pathlib import Path

    if not Path(CHROMIUM).is_file():
        pytest.skip("Chromium absent (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page()
        finally:
            browser.close()
