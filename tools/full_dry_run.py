"""Répétition à blanc du profil ``full`` : chaque chapitre exécuté ici, hors ligne, sur CPU.

``make full-dry-run`` (ou ``python -m tools.full_dry_run [01 03 …]``) :

1. construit des **doublures** des modèles du profil ``full`` (``atelier.assets.model_catalog.FULL``) :
   mêmes architectures et mêmes classes (modèle, configuration, tokeniseur) que les identifiants du hub,
   réduites (2 couches, dimension 64), initialisées au hasard avec une graine, avec des tokeniseurs de la
   même classe entraînés ici (bibliothèque ``tokenizers``) ; elles sont rangées sous leur identifiant dans
   un cache Hugging Face **temporaire** (``HF_HUB_CACHE``, disposition ``models--org--nom/snapshots/<rév>/``
   et ``refs/main``), hub interdit (``HF_HUB_OFFLINE=1``) ;
2. remplace les jeux de données du hub par des fichiers locaux aux **colonnes du hub** (voir
   :data:`HUB_COLUMNS`) : ``ATELIER_DATA`` pointe vers un dossier qui ne contient que les corpus
   littéraires, si bien que ``atelier.assets.data`` passe par son repli sur le hub ; ``datasets.load_dataset``
   y reçoit l'identifiant du hub (``facebook/xnli``…), qu'il résout en dossier local (dossier de travail du
   noyau), avec un ``README.md`` qui déclare configurations et parties comme sur le hub ;
3. exécute chaque notebook ``book/0[1-5]_*.ipynb`` avec ``ATELIER_PROFILE=full`` et ``ATELIER_DRY_RUN=1``
   (budgets réduits, lus par ``atelier.runtime.config.dry_run``), sans GPU (``CUDA_VISIBLE_DEVICES=``),
   et imprime par chapitre les cellules exécutées, la durée et la première erreur.

Outillage du livre : ce module n'est pas installé avec le paquet ``atelier``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
HIDDEN = 64
LAYERS = 2
HEADS = 4
VOCAB = 1000

# Classes attendues pour chaque identifiant du hub (celles que donnent ses config.json et tokenizer_config.json).
EXPECTED = {
    "distilgpt2": ("GPT2LMHeadModel", "GPT2Tokenizer"),
    "bofenghuang/vigostral-7b-chat": ("MistralForCausalLM", "LlamaTokenizer"),
    "sentence-transformers/paraphrase-multilingual-mpnet-base-v2": ("XLMRobertaModel", "XLMRobertaTokenizer"),
    "sentence-transformers/all-MiniLM-L6-v2": ("BertModel", "BertTokenizer"),
    "almanach/camembert-base": ("CamembertForMaskedLM", "CamembertTokenizer"),
    "almanach/camemberta-base": ("DebertaV2ForMaskedLM", "DebertaV2Tokenizer"),
}

# Colonnes des jeux du hub, d'après leurs cartes (atelier.assets.data_catalog.HUB_SCHEMA, sources citées là).
def _hub_columns() -> dict[str, list[str]]:
    from atelier.assets.data_catalog import HUB_SCHEMA

    return {name: list(schema["columns"]) for name, schema in HUB_SCHEMA.items()}


HUB_COLUMNS = _hub_columns()

_FALLBACK_TEXT = (
    "Le modèle lit une phrase, la découpe en jetons et prédit le jeton suivant. "
    "Les embeddings rapprochent les phrases de même sens ; l'affinage adapte un modèle pré-entraîné. "
    "Quand il eut soixante-quinze ans, Monseigneur Myriel était évêque de Digne depuis 1806. "
)


# --------------------------------------------------------------------------
# Tokeniseurs de même classe, entraînés ici
# --------------------------------------------------------------------------
def training_corpus(max_chars: int = 200_000) -> list[str]:
    """Lignes de français pour entraîner les petits tokeniseurs (Les Misérables si présent, sinon un texte fixe)."""
    from atelier.runtime import config

    path = config.data_dir() / "hugo_miserables_gutenberg" / "hugo_les_miserables_t1_fantine.txt"
    try:
        text = path.read_text(encoding="utf-8")[:max_chars]
    except OSError:
        text = _FALLBACK_TEXT * 20
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines + [_FALLBACK_TEXT]


def _unigram_vocab(lines: list[str], specials: list[str], tail: list[str] = (), vocab_size: int = VOCAB):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(lines, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=[],
                                                           unk_token=None, shrinking_factor=0.75))
    pieces = [(p, s) for p, s in json.loads(tok.to_str())["model"]["vocab"] if p not in specials and p not in tail]
    return [(s, 0.0) for s in specials] + pieces + [(s, 0.0) for s in tail]


def _bpe(lines: list[str], specials: list[str], byte_level: bool, vocab_size: int = VOCAB):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if byte_level:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        alphabet = []
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                       initial_alphabet=alphabet))
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


_MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<<SYS>>\\n' + message['content'] + '\\n<</SYS>>\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}"
)


def build_tokenizer(hub_id: str, lines: list[str]):
    """Tokeniseur de la classe de ``hub_id`` (voir :data:`EXPECTED`), au petit vocabulaire appris sur ``lines``."""
    import transformers as T

    if hub_id == "distilgpt2":
        vocab, merges = _bpe(lines, ["<|endoftext|>"], byte_level=True)
        return T.GPT2Tokenizer(vocab=vocab, merges=merges, unk_token="<|endoftext|>", bos_token="<|endoftext|>",
                               eos_token="<|endoftext|>", add_prefix_space=False, model_max_length=1024)
    if hub_id == "bofenghuang/vigostral-7b-chat":
        specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
        vocab, merges = _bpe(lines, specials, byte_level=False, vocab_size=VOCAB + 256)
        tok = T.LlamaTokenizer(vocab=vocab, merges=merges, model_max_length=4096)
        tok.chat_template = _MISTRAL_TEMPLATE
        return tok
    if hub_id == "sentence-transformers/paraphrase-multilingual-mpnet-base-v2":
        vocab = _unigram_vocab(lines, ["<s>", "<pad>", "</s>", "<unk>"], ["<mask>"])
        return T.XLMRobertaTokenizer(vocab=vocab, model_max_length=128)
    if hub_id == "almanach/camembert-base":
        vocab = _unigram_vocab(lines, ["<s>NOTUSED", "<pad>", "</s>NOTUSED", "<unk>", "<s>", "</s>"], ["<mask>"])
        return T.CamembertTokenizer(vocab=vocab, model_max_length=512)
    if hub_id == "almanach/camemberta-base":
        vocab = _unigram_vocab(lines, ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"])
        return T.DebertaV2Tokenizer(vocab=vocab, model_max_length=512)
    if hub_id == "sentence-transformers/all-MiniLM-L6-v2":
        from tokenizers import BertWordPieceTokenizer

        wp = BertWordPieceTokenizer(lowercase=True)
        wp.train_from_iterator(lines, vocab_size=VOCAB)
        return T.BertTokenizer(vocab=wp.get_vocab(), do_lower_case=True, model_max_length=256)
    raise ValueError(f"Pas de doublure pour {hub_id!r}.")


# --------------------------------------------------------------------------
# Modèles réduits de même architecture
# --------------------------------------------------------------------------
def build_model(hub_id: str, tokenizer):
    """Modèle de la classe de ``hub_id`` (2 couches, dimension 64), initialisé au hasard avec la graine fixe."""
    import torch
    import transformers as T

    torch.manual_seed(SEED)
    n = len(tokenizer)
    small = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=2 * HIDDEN)
    if hub_id == "distilgpt2":
        cfg = T.GPT2Config(vocab_size=n, n_positions=1024, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        return T.GPT2LMHeadModel(cfg)
    if hub_id == "bofenghuang/vigostral-7b-chat":
        cfg = T.MistralConfig(vocab_size=n, num_key_value_heads=2, max_position_embeddings=4096, sliding_window=4096,
                              bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                              tie_word_embeddings=False, **small)
        return T.MistralForCausalLM(cfg)
    common = dict(vocab_size=n, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
                  eos_token_id=tokenizer.sep_token_id, **small)
    if hub_id == "sentence-transformers/paraphrase-multilingual-mpnet-base-v2":
        return T.XLMRobertaModel(T.XLMRobertaConfig(max_position_embeddings=514, type_vocab_size=1, **common),
                                 add_pooling_layer=False)
    if hub_id == "almanach/camembert-base":
        return T.CamembertForMaskedLM(T.CamembertConfig(max_position_embeddings=514, type_vocab_size=1, **common))
    if hub_id == "almanach/camemberta-base":
        cfg = T.DebertaV2Config(max_position_embeddings=512, type_vocab_size=0, relative_attention=True,
                                position_buckets=256, max_relative_positions=-1, norm_rel_ebd="layer_norm",
                                share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                                layer_norm_eps=1e-7, **common)
        return T.DebertaV2ForMaskedLM(cfg)
    if hub_id == "sentence-transformers/all-MiniLM-L6-v2":
        return T.BertModel(T.BertConfig(max_position_embeddings=512, **common), add_pooling_layer=False)
    raise ValueError(f"Pas de doublure pour {hub_id!r}.")


SENTENCE_MODELS = {  # identifiant -> normalisation L2 en sortie (comme sur le hub)
    "sentence-transformers/paraphrase-multilingual-mpnet-base-v2": False,
    "sentence-transformers/all-MiniLM-L6-v2": True,
}


def snapshot_dir(hub_cache: Path, hub_id: str) -> Path:
    """Dossier ``models--org--nom/snapshots/<rév>`` du cache du hub, avec ``refs/main`` qui le désigne."""
    repo = hub_cache / ("models--" + hub_id.replace("/", "--"))
    revision = hashlib.sha1(f"atelier-dry-run:{hub_id}".encode()).hexdigest()
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    snap = repo / "snapshots" / revision
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def save_standin(hub_id: str, hub_cache: Path, lines: list[str] | None = None) -> Path:
    """Construit et range la doublure de ``hub_id`` dans ``hub_cache`` ; renvoie son dossier."""
    lines = training_corpus() if lines is None else lines
    snap = snapshot_dir(Path(hub_cache), hub_id)
    tokenizer = build_tokenizer(hub_id, lines)
    model = build_model(hub_id, tokenizer)
    model.save_pretrained(snap)
    tokenizer.save_pretrained(snap)
    if hub_id in SENTENCE_MODELS:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

        modules = [Transformer(str(snap), max_seq_length=tokenizer.model_max_length),
                   Pooling(HIDDEN, pooling_mode="mean")]
        if SENTENCE_MODELS[hub_id]:
            modules.append(Normalize())
        SentenceTransformer(modules=modules, device="cpu").save(str(snap))
    (snap / "DRY_RUN.md").write_text(
        f"Doublure de {hub_id} pour la répétition à blanc du profil full (tools/full_dry_run.py) : "
        f"{type(model).__name__}, {LAYERS} couches, dimension {HIDDEN}, poids aléatoires (graine {SEED}).\n",
        encoding="utf-8")
    return snap


def build_standins(hub_cache: Path, verbose: bool = True) -> dict[str, Path]:
    """Doublures de tous les modèles du profil full (un par identifiant du hub)."""
    from atelier.assets.model_catalog import FULL

    lines = training_corpus()
    out = {}
    for role, asset in FULL.items():
        start = time.perf_counter()
        out[asset.hub_id] = save_standin(asset.hub_id, hub_cache, lines)
        if verbose:
            print(f"  doublure {role:22s} {asset.hub_id} ({time.perf_counter() - start:.1f} s)", flush=True)
    return out


# --------------------------------------------------------------------------
# Jeux du hub remplacés par des fichiers locaux aux colonnes du hub
# --------------------------------------------------------------------------
def _hub_frames(name: str, split):
    """Table aux colonnes du hub (:data:`HUB_COLUMNS`) tirée des fichiers locaux du livre."""
    import pandas as pd

    from atelier.assets import data

    df = data.load(name, split)
    if name == "xnli_fr":
        return df[HUB_COLUMNS[name]].astype({"label": "int64"})
    if name in ("rte3_fr", "gqnli_fr"):  # les fichiers locaux sont ceux du hub : mêmes colonnes
        return df[HUB_COLUMNS[name]].astype({"label": "int64"})
    if name == "stsb_fr":
        return df.rename(columns={"score": "similarity_score"})[HUB_COLUMNS[name]].astype({"similarity_score": "float32"})
    if name == "pawsx_fr":
        return df[HUB_COLUMNS[name]].astype({"id": "int32", "label": "int64"})
    if name == "sib200_fr":
        return df.rename(columns={"label": "category"})[HUB_COLUMNS[name]]
    if name == "oasst1_fr":  # conversations locales → messages d'OASST1 (un arbre par conversation)
        rows = []
        role = {"user": "prompter", "assistant": "assistant"}
        extra = {"user_id": "u", "created_date": "2023-04-12T00:00:00+00:00", "review_count": 3, "review_result": True,
                 "deleted": False, "synthetic": False, "model_name": None, "detoxify": None,
                 "tree_state": "ready_for_export", "emojis": None, "labels": None}
        for i, conv in enumerate(df):
            tree, parent = f"t{split}{i}", None
            for j, m in enumerate(conv["messages"]):
                mid = f"{tree}-{j}"
                rows.append({"message_id": mid, "parent_id": parent, "message_tree_id": tree, **extra,
                             "role": role[m["role"]], "text": m["content"], "lang": "fr", "rank": 0 if j else None})
                parent = mid
        rows.append({"message_id": "en-0", "parent_id": None, "message_tree_id": "en", **extra, "role": "prompter",
                     "text": "Hello", "lang": "en", "rank": None})  # une autre langue, que le repli doit écarter
        return pd.DataFrame(rows)[HUB_COLUMNS[name]].astype({"rank": "Int32"})
    raise ValueError(name)


def _write_split(folder: Path, file: str, frame) -> None:
    """Écrit une partie d'un jeu du hub au chemin ``file`` du dépôt (TSV sans guillemets ou parquet)."""
    import csv

    path = folder / file
    path.parent.mkdir(parents=True, exist_ok=True)
    if file.endswith(".tsv"):
        frame.to_csv(path, sep="\t", index=False, quoting=csv.QUOTE_NONE)
    else:
        frame.reset_index(drop=True).to_parquet(path, index=False)


def build_hub_datasets(root: Path, source_data: Path) -> dict[str, Path]:
    """Écrit sous ``root/<identifiant du hub>/`` les jeux du hub, disposés comme leurs dépôts.

    Parquet et ``README.md`` de configuration (configs et parties déclarées, comme sur le hub) ; les
    fichiers de :data:`atelier.assets.data_catalog.HUB_FILES` à leur chemin du dépôt, avec un script de
    chargement factice pour SIB-200 (que ``datasets`` refuse, comme sur le hub) ; RTE3-FR et GQNLI-FR en TSV
    sans configuration, dont ``datasets`` déduit les parties des noms de fichiers, comme sur le hub.
    """
    from atelier.assets.data_catalog import DATASETS, HUB_FILES, HUB_IDS

    os.environ["ATELIER_DATA"] = str(source_data)
    tsv_repos = {"rte3_fr": {"dev": "RTE3-FR-dev-set-3class.tsv", "test": "RTE3-FR-test-gold-3class.tsv"},
                 "gqnli_fr": {"test": "gqnli.test.fr.tsv"}}
    out = {}
    for name, (hub_id, config_name) in HUB_IDS.items():
        ds = DATASETS[name]
        folder = root / hub_id
        sub = config_name or "default"
        folder.mkdir(parents=True, exist_ok=True)
        hub_parts: dict[str, list] = {}
        for split, hub_split in ds.hub_splits.items():
            if name == "oasst1_fr" and split != "top1":
                continue  # un seul jeu de messages sur le hub ; « all » en est tiré aussi
            splits = hub_split if isinstance(hub_split, tuple) else (hub_split,)
            frame = _hub_frames(name, split)
            for k, s in enumerate(splits):  # oasst1 : train et validation, un arbre sur deux chacune
                part = frame
                if name == "oasst1_fr":
                    trees = sorted(frame["message_tree_id"].unique())
                    part = frame[frame["message_tree_id"].isin(trees[k::len(splits)])]
                if name == "pawsx_fr":
                    _write_split(folder, HUB_FILES[hub_id, config_name][s], part)
                elif name in tsv_repos or name == "sib200_fr":  # fichiers d'origine, tels quels (guillemets compris)
                    pass
                else:
                    file = f"{sub}/{s}-00000-of-00001.parquet"
                    _write_split(folder, file, part)
                    hub_parts[s] = [file]
        for split, file in tsv_repos.get(name, {}).items():
            shutil.copyfile(source_data / ds.folder / ds.files[split], folder / file)
        if name == "sib200_fr":
            for split, hub_split in ds.hub_splits.items():
                target = folder / HUB_FILES[hub_id, config_name][hub_split]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source_data / ds.folder / ds.files[split], target)
            (folder / "sib200.py").write_text("# Script de chargement du dépôt (factice) : datasets ≥ 4 le refuse.\n")
        if hub_parts:
            configs = [{"config_name": sub, "data_files": [{"split": s, "path": f} for s, f in hub_parts.items()]}]
            if config_name is None:
                configs[0]["default"] = True
            readme = "---\n" + _yaml({"configs": configs}) + "---\n" + f"Doublure locale de {hub_id} (colonnes du hub).\n"
        else:
            readme = f"Doublure locale de {hub_id} (colonnes et fichiers du hub).\n"
        (folder / "README.md").write_text(readme, encoding="utf-8")
        out[name] = folder
    return out


def _yaml(obj) -> str:
    import yaml

    return yaml.safe_dump(obj, allow_unicode=True, sort_keys=False)


# --------------------------------------------------------------------------
# Exécution des chapitres
# --------------------------------------------------------------------------
def environment(work: Path) -> dict[str, str]:
    """Variables d'environnement de la répétition (profil full, budgets réduits, hors ligne, sans GPU)."""
    env = dict(os.environ)
    env.update({
        "ATELIER_PROFILE": "full", "ATELIER_DRY_RUN": "1", "ATELIER_DATA": str(work / "data"),
        "ATELIER_BUILD": str(work / "_build"), "HF_HOME": str(work / "hf"), "HF_HUB_CACHE": str(work / "hf" / "hub"),
        "HF_DATASETS_CACHE": str(work / "hf" / "datasets"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false",
        "TQDM_DISABLE": "1", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
    })
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "code"), str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def prepare(work: Path, verbose: bool = True) -> Path:
    """Prépare le dossier de travail : doublures, jeux du hub, corpus littéraires ; renvoie le dossier d'exécution."""
    from atelier.runtime import config

    source_data = config.data_dir()
    run_dir = work / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    if verbose:
        print(f"Doublures des modèles du profil full dans {work / 'hf' / 'hub'} :", flush=True)
    build_standins(work / "hf" / "hub", verbose)
    build_hub_datasets(run_dir, source_data)
    if verbose:
        print(f"Jeux du hub (colonnes du hub) dans {run_dir} ; corpus littéraires liés depuis {source_data}.", flush=True)
    (work / "data").mkdir(exist_ok=True)
    for folder in ("hugo_miserables_gutenberg", "roman19_cligs"):  # pas de repli hors ligne pour ces corpus
        if (source_data / folder).is_dir() and not (work / "data" / folder).exists():
            (work / "data" / folder).symlink_to(source_data / folder)
    return run_dir


def _cell_errors(nb) -> list[str]:
    """Cellules en erreur (hors cellules marquées raises-exception) : « n° : Exception: message »."""
    errors = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "raises-exception" in cell.metadata.get("tags", []):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = (cell.source.splitlines() or [""])[0][:60]
                errors.append(f"cellule {i} ({first!r}) : {out['ename']}: {str(out['evalue'])[:300]}")
    return errors


def _cell_seconds(cell) -> float:
    """Durée d'exécution d'une cellule, d'après les horodatages que nbclient écrit dans ses métadonnées."""
    from datetime import datetime

    stamps = cell.get("metadata", {}).get("execution", {})
    try:
        start = datetime.fromisoformat(stamps["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(stamps["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return 0.0
    return (end - start).total_seconds()


def slowest_cells(nb, n: int = 3) -> list[str]:
    """Les ``n`` cellules les plus longues : « n° (première ligne) : durée »."""
    timed = [(_cell_seconds(c), i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    timed.sort(key=lambda t: -t[0])
    return [f"cellule {i} ({(c.source.splitlines() or [''])[0][:50]!r}) : {sec:.1f} s" for sec, i, c in timed[:n]]


def run_notebook(path: Path, run_dir: Path, env: dict[str, str], timeout: int = 1800) -> dict:
    """Exécute toutes les cellules d'un notebook dans ``run_dir`` (sans s'arrêter à la première erreur).

    Renvoie le nombre de cellules exécutées, la durée et les erreurs (cellules non marquées ``raises-exception``).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # le noyau hérite de l'environnement du processus
    start = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(run_dir)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    ran = sum(1 for c in code if c.get("execution_count") is not None)
    nbformat.write(nb, run_dir / path.name)
    return {"chapter": path.stem, "cells": len(code), "ran": ran, "seconds": time.perf_counter() - start,
            "errors": _cell_errors(nb), "slowest": slowest_cells(nb), "output": str(run_dir / path.name)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    keep = "--keep" in args
    wanted = [a for a in args if not a.startswith("--")]
    notebooks = sorted(ROOT.glob("book/0[1-5]_*.ipynb"))
    if wanted:
        notebooks = [nb for nb in notebooks if any(nb.stem.startswith(w) for w in wanted)]
    work = Path(tempfile.mkdtemp(prefix="atelier-full-dry-run-"))
    print(f"Répétition à blanc du profil full dans {work}", flush=True)
    failures = 0
    try:
        env = environment(work)
        saved = dict(os.environ)
        os.environ.update({k: env[k] for k in ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE")})
        os.environ.update({"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
                           "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"})
        run_dir = prepare(work)
        os.environ.clear()
        os.environ.update(saved)
        results = []
        for nb in notebooks:
            res = run_notebook(nb, run_dir, env)
            results.append(res)
            status = "ok" if not res["errors"] else f"{len(res['errors'])} cellule(s) en erreur"
            print(f"{res['chapter']:18s} {res['ran']:3d}/{res['cells']:3d} cellules  {res['seconds']:6.0f} s  {status}",
                  flush=True)
            for err in res["errors"]:
                print(f"    {err}", flush=True)
            print("    les plus longues : " + " ; ".join(res["slowest"]), flush=True)
            failures += bool(res["errors"])
        total = sum(r["seconds"] for r in results)
        print(f"Total : {sum(r['ran'] for r in results)} cellules en {total:.0f} s ; "
              f"{failures} chapitre(s) en échec.", flush=True)
    finally:
        if keep:
            print(f"Dossier conservé : {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
