"""Tests de atelier.assets.data : effectifs des SOURCE.md, colonnes, étiquettes, repli sur le hub (simulé)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from atelier.assets import data
from atelier.assets.models import AssetUnavailableError
from atelier.runtime import config

needs_data = pytest.mark.skipif(
    not (config.data_dir() / "xnli_fr").is_dir(), reason="dossier de données partagé absent"
)


# --------------------------------------------------------------------------
# Effectifs et colonnes (fichiers locaux)
# --------------------------------------------------------------------------
COUNTS = [  # (nom, partie, lignes, effectifs par étiquette d'après SOURCE.md)
    ("xnli_fr", "dev", 2490, {0: 830, 1: 830, 2: 830}),
    ("xnli_fr", "test", 5010, {0: 1670, 1: 1670, 2: 1670}),
    ("rte3_fr", "dev", 800, {0: 409, 1: 300, 2: 91}),
    ("rte3_fr", "test", 800, {0: 409, 1: 318, 2: 73}),
    ("gqnli_fr", "test", 300, {0: 97, 1: 100, 2: 103}),
    ("pawsx_fr", "dev", 1992, {1: 860, 0: 1132}),
    ("pawsx_fr", "test", 1960, {1: 894, 0: 1066}),
    ("stsb_fr", "train", 5749, None),
    ("stsb_fr", "dev", 1500, None),
    ("stsb_fr", "test", 1379, None),
    ("sib200_fr", "train", 701, {"science/technology": 176, "travel": 138, "politics": 102, "sports": 85,
                                 "health": 77, "entertainment": 65, "geography": 58}),
    ("sib200_fr", "dev", 99, None),
    ("sib200_fr", "test", 204, None),
]


@needs_data
@pytest.mark.parametrize("name,split,rows,labels", COUNTS)
def test_counts_match_source_md(name, split, rows, labels):
    df = data.load(name, split)
    assert isinstance(df, pd.DataFrame) and len(df) == rows
    assert data.DATASETS[name].counts[split] == rows
    if labels is not None:
        assert df["label"].value_counts().to_dict() == labels
    assert not df.isna().any().any()


@needs_data
@pytest.mark.parametrize("name", ["xnli_fr", "rte3_fr", "gqnli_fr"])
def test_nli_columns_and_label_mapping(name):
    df = data.load(name, data.DATASETS[name].default_split or "test")
    assert list(df.columns[:4]) == ["premise", "hypothesis", "label", "label_text"]
    assert df["label"].dtype.kind == "i"
    for label, text in enumerate(data.NLI_LABELS):
        assert set(df.loc[df["label"] == label, "label_text"]) == {text}
    assert df["premise"].str.len().min() > 0 and df["hypothesis"].str.len().min() > 0


@needs_data
def test_xnli_first_rows_and_no_quote_mangling():
    dev = data.load("xnli_fr", "dev")
    assert dev.loc[0, "premise"] == "Et il a dit, maman, je suis à la maison."
    assert dev.loc[0, "label_text"] == "neutral" and dev.loc[1, "label_text"] == "contradiction"
    # TSV sans guillemets : un guillemet en tête de champ ne doit pas fusionner des lignes.
    assert dev["genre"].nunique() == 10 and (dev["genre"].value_counts() == 249).all()


@needs_data
def test_rte3_crlf_stripped():
    df = data.load("rte3_fr", "test")
    assert not df["length"].str.contains("\r").any()
    assert set(df["task"]) == {"IE", "IR", "QA", "SUM"}


@needs_data
def test_stsb_and_pawsx_columns():
    sts = data.load("stsb_fr", "dev")
    assert list(sts.columns) == ["sentence1", "sentence2", "score"]
    assert sts["score"].between(0, 5).all() and sts["score"].dtype.kind == "f"
    assert sts.loc[0, "sentence1"].startswith("Un homme avec un casque")
    paws = data.load("pawsx_fr", "test")
    assert list(paws.columns[:3]) == ["sentence1", "sentence2", "label"]
    assert not paws["sentence1"].isin(["", "NS"]).any()


@needs_data
def test_sib200_text_label():
    df = data.load("sib200_fr", "dev")
    assert list(df.columns[:2]) == ["text", "label"]
    assert set(df["label"]) == set((config.data_dir() / "sib200_fr" / "labels.txt").read_text().split())


@needs_data
def test_split_none_concatenates_with_split_column():
    df = data.load("stsb_fr")
    assert len(df) == 5749 + 1500 + 1379
    assert df.groupby("split").size().to_dict() == {"train": 5749, "dev": 1500, "test": 1379}
    assert len(data.load("gqnli_fr")) == 300  # partie unique


@needs_data
def test_dialogues():
    top1 = data.load("oasst1_fr", "top1")
    assert len(top1) == 256 and data.load("oasst1_fr") == top1
    assert len(data.load("oasst1_fr", "all")) == 1183
    for conv in top1:
        roles = [m["role"] for m in conv["messages"]]
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert all(a != b for a, b in zip(roles, roles[1:]))
        assert all(m["content"].strip() for m in conv["messages"])
    assert sorted({len(c["messages"]) for c in top1}) == [2, 4, 6]


@needs_data
def test_corpora():
    t1 = data.load("miserables", 1)
    assert isinstance(t1, str) and t1.startswith("Livre premier--Un juste")
    assert "\ufeff" not in t1 and "\r" not in t1
    everything = data.load("miserables")
    assert everything.startswith(t1) and 500_000 < len(everything.split()) < 600_000
    meta = data.roman19_metadata()
    assert len(meta) == 36 and {"author", "title", "year", "words", "file"} <= set(meta.columns)
    verne = data.load("roman19", author="verne")
    assert 600_000 < len(verne.split()) < 900_000
    one = data.load("roman19", author="Flaubert")
    assert 0 < len(one) < len(verne)
    with pytest.raises(ValueError, match="Aucun roman.*Verne"):
        data.load("roman19", author="Proust")


# --------------------------------------------------------------------------
# Mauvaises entrées
# --------------------------------------------------------------------------
def test_bad_inputs_are_french_errors():
    with pytest.raises(ValueError, match="Jeu de données inconnu.*xnli_fr"):
        data.load("imdb")
    with pytest.raises(TypeError, match="chaîne"):
        data.load(3)
    with pytest.raises(ValueError, match="Partie inconnue.*'dev', 'test'"):
        data.load("xnli_fr", "train")
    with pytest.raises(ValueError, match="Partie inconnue"):
        data.load("miserables", 6)
    with pytest.raises(ValueError, match="roman19"):
        data.load("xnli_fr", "dev", author="Hugo")
    with pytest.raises(ValueError, match="pas de parties"):
        data.load("roman19", "train")
    with pytest.raises(ValueError, match="inconnu"):
        data.describe("squad")


def test_describe_every_name():
    assert set(data.NAMES) == {"xnli_fr", "rte3_fr", "gqnli_fr", "stsb_fr", "pawsx_fr", "sib200_fr",
                               "oasst1_fr", "miserables", "roman19"}
    for name in data.NAMES:
        info = data.describe(name)
        assert info["license"] and info["citation"] and info["hub_fallback"]
        assert info["bibtex"].lstrip().startswith("@")
        assert info["counts"]
    assert "facebook/xnli" in data.describe("xnli_fr")["hub_fallback"]
    assert "NC" in data.describe("xnli_fr")["license"]


# --------------------------------------------------------------------------
# Variable ATELIER_DATA et repli sur la source publique (sans réseau)
# --------------------------------------------------------------------------
@needs_data
def test_atelier_data_override(monkeypatch, tmp_path):
    shutil.copytree(config.data_dir() / "sib200_fr", tmp_path / "sib200_fr")
    df = pd.read_csv(tmp_path / "sib200_fr" / "dev.tsv", sep="\t")
    df.head(5).to_csv(tmp_path / "sib200_fr" / "dev.tsv", sep="\t", index=False)
    monkeypatch.setenv("ATELIER_DATA", str(tmp_path))
    assert len(data.load("sib200_fr", "dev")) == 5
    assert data.describe("sib200_fr")["local_path"] == str(tmp_path / "sib200_fr")


class FakeHubSplit:
    def __init__(self, df):
        self.df = df

    def to_pandas(self):
        return self.df


def test_missing_folder_falls_back_to_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("ATELIER_DATA", str(tmp_path / "absent"))
    calls = []

    def fake_hub(path, name, split):
        calls.append((path, name, split))
        if path == "facebook/xnli":
            return FakeHubSplit(pd.DataFrame({"premise": ["P", "P"], "hypothesis": ["H1", "H2"], "label": [2, 0]}))
        if path == "PhilipMay/stsb_multi_mt":
            return FakeHubSplit(pd.DataFrame({"sentence1": ["a"], "sentence2": ["b"], "similarity_score": [4.5]}))
        if path == "Davlan/sib200":
            return FakeHubSplit(pd.DataFrame({"index_id": [1], "category": ["travel"], "text": ["Voyage."]}))
        if path == "google-research-datasets/paws-x":
            return FakeHubSplit(pd.DataFrame({"id": [1, 2], "sentence1": ["a", "NS"], "sentence2": ["b", "c"],
                                              "label": [1, 0]}))
        raise ConnectionError("pas de réseau")

    monkeypatch.setattr(data, "_hub_load", fake_hub)
    xnli = data.load("xnli_fr", "dev")
    assert calls[-1] == ("facebook/xnli", "fr", "validation")
    assert xnli["label"].tolist() == [2, 0] and xnli["label_text"].tolist() == ["contradiction", "entailment"]
    sts = data.load("stsb_fr", "test")
    assert list(sts.columns) == ["sentence1", "sentence2", "score"] and sts.loc[0, "score"] == 4.5
    assert data.load("sib200_fr", "dev")["label"].tolist() == ["travel"]
    assert calls[-1] == ("Davlan/sib200", "fra_Latn", "validation")
    assert len(data.load("pawsx_fr", "dev")) == 1  # lignes « NS » écartées comme dans les fichiers clean


def test_oasst_tree_reconstruction(monkeypatch, tmp_path):
    monkeypatch.setenv("ATELIER_DATA", str(tmp_path))
    msgs = pd.DataFrame({
        "message_id": ["q", "a1", "a2", "q2", "b"],
        "parent_id": [None, "q", "q", "a1", "q2"],
        "message_tree_id": ["t"] * 5,
        "role": ["prompter", "assistant", "assistant", "prompter", "assistant"],
        "text": ["Bonjour ?", "Salut.", "Coucou.", "Ça va ?", "Oui."],
        "rank": [float("nan"), 0.0, 1.0, float("nan"), 0.0],
        "lang": ["fr"] * 5,
    })
    splits = {"train": msgs, "validation": msgs.iloc[:0]}
    monkeypatch.setattr(data, "_hub_load", lambda path, name, split: FakeHubSplit(splits[split]))
    top1 = data.load("oasst1_fr", "top1")
    assert [[m["content"] for m in c["messages"]] for c in top1] == [["Bonjour ?", "Salut.", "Ça va ?", "Oui."]]
    every = data.load("oasst1_fr", "all")
    assert len(every) == 2 and every[1]["messages"][-1] == {"role": "assistant", "content": "Coucou."}


def test_missing_folder_offline_gives_french_error(monkeypatch, tmp_path):
    monkeypatch.setenv("ATELIER_DATA", str(tmp_path / "absent"))
    attempted = []

    def offline_hub(path, name, split):
        attempted.append(path)
        raise ConnectionError("Couldn't reach 'facebook/xnli' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(data, "_hub_load", offline_hub)
    with pytest.raises(AssetUnavailableError, match=r"xnli_fr.*ATELIER_DATA.*facebook/xnli") as err:
        data.load("xnli_fr", "test")
    assert attempted == ["facebook/xnli"]
    assert "Traceback" not in str(err.value) and "ConnectionError" in str(err.value)


def test_corpus_fallback_offline_gives_french_error(monkeypatch, tmp_path):
    monkeypatch.setenv("ATELIER_DATA", str(tmp_path / "absent"))
    for var in config.HUB_OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    urls = []

    def no_network(url, timeout=None):
        urls.append(url)
        raise OSError("réseau coupé")

    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(AssetUnavailableError, match="miserables.*ATELIER_DATA"):
        data.load("miserables", 2)
    assert urls and "17493" in urls[0]
    with pytest.raises(AssetUnavailableError, match="roman19"):
        data.roman19_metadata()
    assert urls[-1].endswith("roman19/metadata.csv")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # hors ligne déclaré : aucune tentative
    n = len(urls)
    with pytest.raises(AssetUnavailableError, match="miserables"):
        data.load("miserables", 3)
    assert len(urls) == n


@pytest.mark.parametrize("var", config.HUB_OFFLINE_VARS)
def test_one_rule_decides_whether_the_hub_may_be_used(monkeypatch, var):
    """Modèles et données suivent la même décision : l'une des trois variables suffit à couper le hub."""
    for other in config.HUB_OFFLINE_VARS:
        monkeypatch.delenv(other, raising=False)
    assert config.hub_allowed()
    monkeypatch.setenv(var, "1")
    assert not config.hub_allowed()
    monkeypatch.setenv(var, "0")
    assert config.hub_allowed()
