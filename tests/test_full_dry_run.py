"""Doublures du profil full (tools/full_dry_run.py) : rangées sous leur identifiant, relues hors ligne."""

import json

import pytest

from tools import full_dry_run as dry

LINES = [dry._FALLBACK_TEXT] * 30


@pytest.mark.parametrize("hub_id", ["distilgpt2", "almanach/camemberta-base"])
def test_standin_loads_offline_under_hub_id(hub_id, tmp_path, monkeypatch):
    import transformers as T

    hub = tmp_path / "hub"
    dry.save_standin(hub_id, hub, LINES)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    model_class, tokenizer_class = dry.EXPECTED[hub_id]
    model = getattr(T, model_class).from_pretrained(hub_id, cache_dir=str(hub))
    auto = T.AutoModel.from_pretrained(hub_id, cache_dir=str(hub))
    tok = T.AutoTokenizer.from_pretrained(hub_id, cache_dir=str(hub))
    assert type(model).__name__ == model_class
    assert model.config.num_hidden_layers == dry.LAYERS and model.config.hidden_size == dry.HIDDEN
    assert type(auto).__name__ == model_class.replace("LMHeadModel", "Model").replace("ForMaskedLM", "Model")
    assert type(tok).__name__ == tokenizer_class
    snap = next((hub / ("models--" + hub_id.replace("/", "--")) / "snapshots").iterdir())
    assert json.loads((snap / "tokenizer_config.json").read_text())["tokenizer_class"] == tokenizer_class
    assert len(tok("Le modèle lit une phrase.").input_ids) > 2


def test_standin_is_seeded(tmp_path):
    import torch
    import transformers as T

    a = dry.save_standin("distilgpt2", tmp_path / "a", LINES)
    b = dry.save_standin("distilgpt2", tmp_path / "b", LINES)
    wa, wb = (T.GPT2LMHeadModel.from_pretrained(str(p)).transformer.wte.weight for p in (a, b))
    assert torch.equal(wa, wb)


def test_dry_budget(monkeypatch):
    from atelier.runtime import config

    monkeypatch.delenv("ATELIER_DRY_RUN", raising=False)
    assert config.dry_budget({"epochs": 10}, epochs=1) == {"epochs": 10}
    monkeypatch.setenv("ATELIER_DRY_RUN", "1")
    assert config.dry_run() and config.dry_budget({"epochs": 10, "lr": 1e-3}, epochs=1) == {"epochs": 1, "lr": 1e-3}
    monkeypatch.setenv("ATELIER_DRY_RUN", "peut-être")
    with pytest.raises(ValueError, match="ATELIER_DRY_RUN"):
        config.dry_run()


def test_hub_standins_read_through_hub_fallback(tmp_path, monkeypatch):
    """Jeux du hub disposés comme leurs dépôts : le repli d'atelier.assets.data les relit comme les fichiers locaux."""
    import datasets
    import pandas as pd

    from atelier.assets import data
    from atelier.assets.data_catalog import DATASETS, HUB_IDS
    from atelier.runtime import config

    source = config.data_dir()
    if not (source / "xnli_fr").is_dir():
        pytest.skip("données locales absentes")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    monkeypatch.setenv("ATELIER_DATA", str(source))
    dry.build_hub_datasets(tmp_path / "hub", source)
    monkeypatch.chdir(tmp_path / "hub")   # datasets résout « org/nom » en dossier local d'abord
    with pytest.raises(RuntimeError, match="scripts are no longer supported"):
        datasets.load_dataset("Davlan/sib200", "fra_Latn", split="test")   # comme sur le hub : d'où HUB_FILES
    for name in HUB_IDS:
        for split in DATASETS[name].hub_splits:
            monkeypatch.setenv("ATELIER_DATA", str(source))
            local = data.load(name, split)
            monkeypatch.setenv("ATELIER_DATA", str(tmp_path / "absent"))
            hub = data.load(name, split)
            if name == "oasst1_fr":
                if split == "top1":   # mêmes conversations (l'ordre suit les parties train/validation du hub)
                    key = lambda c: json.dumps(c["messages"], ensure_ascii=False)  # noqa: E731
                    assert sorted(map(key, hub)) == sorted(map(key, local))
                continue
            cols = [c for c in local.columns if c in ("premise", "hypothesis", "label", "sentence1", "sentence2",
                                                      "score", "text")]
            pd.testing.assert_frame_equal(hub[cols].reset_index(drop=True), local[cols].reset_index(drop=True),
                                          check_dtype=False)


def test_load_encoder_accepts_hub_id_from_cache(tmp_path, monkeypatch):
    """Profil full : ctx.use_model renvoie un identifiant du hub, que load_encoder résout dans le cache."""
    import huggingface_hub.constants as hub_constants

    from atelier import finetuning as F

    hub_id = "sentence-transformers/all-MiniLM-L6-v2"
    dry.save_standin(hub_id, tmp_path / "hub", LINES)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    encoder = F.load_encoder(hub_id)
    assert encoder[0].auto_model.config.num_hidden_layers == dry.LAYERS
    with pytest.raises(ValueError, match="introuvable"):
        F.load_encoder("sentence-transformers/absent-du-cache")
