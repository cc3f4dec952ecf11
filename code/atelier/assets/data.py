"""Jeux de données français du livre, désignés par leur nom, disponibles hors ligne.

Utilisé par tous les chapitres (via ``ctx.use_data(name, split)`` de
:mod:`atelier.runtime.book`) ; la préface en affiche les licences (:func:`describe`).

Les fichiers sont lus dans ``atelier.runtime.config.data_dir()`` (variable
``ATELIER_DATA``, par défaut ``../shared/data`` à côté du dépôt). Si le dossier
ou le fichier manque, on se rabat sur la source publique (hub Hugging Face via
``datasets.load_dataset``, ou le site d'origine pour les corpus littéraires),
avec les mêmes noms de colonnes :

- inférence (NLI) : ``premise``, ``hypothesis``, ``label`` (0 implication,
  1 neutre, 2 contradiction), ``label_text`` ;
- similarité (STS) : ``sentence1``, ``sentence2``, ``score`` (0 à 5) ;
- paraphrase (PAWS-X) : ``sentence1``, ``sentence2``, ``label`` (1 = paraphrase) ;
- thèmes (SIB-200) : ``text``, ``label`` (nom de la catégorie) ;
- dialogues : liste de ``{"messages": [{"role", "content"}, …]}`` ;
- corpus littéraires : une chaîne de caractères.

>>> from atelier.assets.data import load
>>> dev = load("xnli_fr", "dev")          # DataFrame de 2 490 lignes
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from atelier.assets.data_catalog import DATASETS, HUB_FILES, HUB_IDS, NAMES, NLI_LABELS, NLI_LABELS_FR, Dataset
from atelier.assets.models import AssetUnavailableError
from atelier.runtime import config


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------
def _get(name) -> Dataset:
    if not isinstance(name, str):
        raise TypeError(f"Le nom du jeu de données doit être une chaîne, reçu {type(name).__name__}.")
    if name not in DATASETS:
        raise ValueError(f"Jeu de données inconnu : {name!r}. Noms acceptés : {', '.join(NAMES)}.")
    return DATASETS[name]


def _check_split(ds: Dataset, split):
    if ds.name == "roman19":
        if split is not None:
            raise ValueError("roman19 n'a pas de parties : split doit valoir None (filtrer avec author= ou title=).")
        return None
    if split is None:
        return ds.default_split
    if not isinstance(split, str | int) or isinstance(split, bool):
        accepted = ", ".join(repr(s) for s in ds.files)
        raise TypeError(f"split doit être le nom d'une partie ({accepted}) ou None ; reçu {type(split).__name__} "
                        f"({split!r}). Pour plusieurs parties, appelez load() une fois par partie.")
    if split not in ds.files:
        accepted = ", ".join(repr(s) for s in ds.files)
        raise ValueError(f"Partie inconnue pour {ds.name} : {split!r}. Valeurs acceptées : {accepted} ou None.")
    return split


# --------------------------------------------------------------------------
# Lecture des fichiers locaux
# --------------------------------------------------------------------------
def _read_tsv(path: Path, quoted: bool = False) -> pd.DataFrame:
    # TSV sans guillemets (XNLI, PAWS-X), ou à guillemets CSV (RTE3-FR : 200 champs entre « " », comme les lit
    # datasets sur le hub) ; le lecteur C de pandas accepte les CRLF de RTE3.
    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE, dtype=str,
                       keep_default_na=False, encoding="utf-8")


def _nli(df: pd.DataFrame) -> pd.DataFrame:
    if "label_text" in df:
        text = df["label_text"].astype(str)
    else:
        raw = df["label"]
        text = raw.map(lambda v: NLI_LABELS[int(v)] if str(v).isdigit() else str(v))
    if not text.isin(NLI_LABELS).all():
        raise ValueError(f"Étiquettes NLI inattendues : {sorted(set(text) - set(NLI_LABELS))}.")
    out = pd.DataFrame({"premise": df["premise"], "hypothesis": df["hypothesis"],
                        "label": text.map(NLI_LABELS.index).astype(int), "label_text": text})
    extras = [c for c in df.columns if c not in out.columns and c not in ("label",)]
    return pd.concat([out, df[extras]], axis=1).reset_index(drop=True)


def _read_local(ds: Dataset, split, path: Path):
    if ds.task == "nli":
        return _nli(_read_tsv(path, ds.quoted))
    if ds.task == "sts":
        df = pd.read_csv(path, header=None, names=["sentence1", "sentence2", "score"], encoding="utf-8")
        return df.astype({"score": float})
    if ds.task == "paraphrase":
        df = _read_tsv(path)
        return pd.DataFrame({"sentence1": df["sentence1"], "sentence2": df["sentence2"],
                             "label": df["label"].astype(int), "id": df["id"]})
    if ds.task == "topic":
        df = _read_tsv(path)
        return pd.DataFrame({"text": df["text"], "label": df["category"], "index_id": df["index_id"]})
    if ds.task == "dialogue":
        with open(path, encoding="utf-8") as f:
            return [{"id": d.get("id"), "messages": [{"role": m["role"], "content": m["content"]}
                                                     for m in d["messages"]]}
                    for d in map(json.loads, filter(str.strip, f))]
    if ds.task == "corpus":
        return path.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    raise AssertionError(ds.task)  # pragma: no cover


def roman19_metadata() -> pd.DataFrame:
    """Métadonnées des 36 romans de roman19 (auteur, titre, année, genre, nombre de mots, fichier)."""
    import io

    folder = config.data_dir() / DATASETS["roman19"].folder
    try:
        text = (folder / "metadata.csv").read_text(encoding="utf-8")
    except FileNotFoundError:
        text = _download_text(_ROMAN19_URL + "metadata.csv", DATASETS["roman19"], folder)
    meta = pd.read_csv(io.StringIO(text), index_col=0)
    meta = meta.rename(columns={"author-name": "author", "textsize-words": "words"})
    meta["file"] = meta["author"] + "_" + meta["title"] + "-" + meta["idno"] + ".txt"
    return meta.reset_index(drop=True)


def _filter(values: pd.Series, wanted) -> pd.Series:
    if wanted is None:
        return pd.Series(True, index=values.index)
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    return values.str.lower().apply(lambda v: any(w.lower() in v for w in wanted))


def _load_roman19(author=None, title=None) -> str:
    meta = roman19_metadata()
    rows = meta[_filter(meta["author"], author) & _filter(meta["title"], title)]
    if rows.empty:
        raise ValueError(f"Aucun roman de roman19 ne correspond à author={author!r}, title={title!r} ; "
                         f"auteurs disponibles : {', '.join(sorted(meta['author'].unique()))}.")
    folder = config.data_dir() / DATASETS["roman19"].folder / "txt"
    texts = []
    for file in rows.sort_values(["year", "file"])["file"]:
        try:
            texts.append((folder / file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            texts.append(_download_text(_ROMAN19_URL + "txt/" + file, DATASETS["roman19"], folder))
    return "\n\n".join(t.strip("\n") for t in texts)


# --------------------------------------------------------------------------
# Source publique de secours
# --------------------------------------------------------------------------
_ROMAN19_URL = "https://raw.githubusercontent.com/cligs/textbox/master/french/roman19/"
_GUTENBERG = {1: 17489, 2: 17493, 3: 17494, 4: 17518, 5: 17519}


def _hub_load(path: str, name: str | None, split: str):
    """Charge une partie d'un jeu du hub Hugging Face (point d'entrée remplaçable dans les tests).

    Les dépôts à script de chargement (:data:`HUB_FILES`) sont lus par leurs fichiers de données ; comme
    ``datasets``, un dossier local qui porte l'identifiant du hub passe avant le hub.
    """
    from datasets import load_dataset

    files = HUB_FILES.get((path, name))
    if files is None:
        return load_dataset(path, name, split=split)
    base = path if Path(path).is_dir() else f"hf://datasets/{path}"
    file = f"{base}/{files[split]}"
    if file.endswith(".tsv"):  # TSV sans guillemets, comme le lisait le script du dépôt
        return load_dataset("csv", data_files={split: file}, split=split, sep="\t", quoting=csv.QUOTE_NONE)
    return load_dataset("parquet", data_files={split: file}, split=split)


def _download_text(url: str, ds: Dataset, folder: Path) -> str:
    import urllib.request

    if not config.hub_allowed():
        _unavailable(ds, folder, None)
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 (URL fixe)
            return resp.read().decode("utf-8-sig").replace("\r\n", "\n")
    except Exception as exc:  # noqa: BLE001
        _unavailable(ds, folder, exc)


def _unavailable(ds: Dataset, where: Path, exc: Exception | None):
    cause = f" (dernière erreur : {type(exc).__name__})" if exc is not None else ""
    raise AssetUnavailableError(
        f"Jeu de données {ds.name!r} introuvable : ni {where} (dossier lu via la variable ATELIER_DATA, "
        f"actuellement {config.data_dir()}), ni la source publique {ds.hub}{cause}. "
        f"Définissez ATELIER_DATA vers un dossier contenant {ds.folder}/, ou connectez la machine "
        f"à Internet (sans HF_HUB_OFFLINE) pour le télécharger."
    )


def _from_hub(ds: Dataset, split):
    hub_id, config_name = HUB_IDS[ds.name]
    hub_split = ds.hub_splits[split]
    hf = pd.concat([_hub_load(hub_id, config_name, s).to_pandas()
                    for s in (hub_split if isinstance(hub_split, tuple) else (hub_split,))], ignore_index=True)
    if ds.task == "nli":
        if "label_text" not in hf and hf["label"].dtype.kind in "iu":
            hf = hf[hf["label"].between(0, 2)]
        return _nli(hf)
    if ds.task == "sts":
        return pd.DataFrame({"sentence1": hf["sentence1"], "sentence2": hf["sentence2"],
                             "score": hf["similarity_score"].astype(float)})
    if ds.task == "paraphrase":
        bad = hf["sentence1"].isin(["", "NS"]) | hf["sentence2"].isin(["", "NS"]) | ~hf["label"].isin([0, 1])
        hf = hf[~bad].reset_index(drop=True)
        return pd.DataFrame({"sentence1": hf["sentence1"], "sentence2": hf["sentence2"],
                             "label": hf["label"].astype(int), "id": hf["id"].astype(str)})
    if ds.task == "topic":
        return pd.DataFrame({"text": hf["text"], "label": hf["category"], "index_id": hf["index_id"]})
    if ds.task == "dialogue":
        return _oasst_trees(hf[hf["lang"] == "fr"], best_only=(split == "top1"))
    raise AssertionError(ds.task)  # pragma: no cover


def _oasst_trees(msgs: pd.DataFrame, best_only: bool) -> list[dict]:
    """Reconstitue les conversations d'OASST1 (chemins racine → feuille ; la meilleure seule si best_only)."""
    children: dict = {}
    for row in msgs.itertuples():
        parent = row.parent_id if isinstance(row.parent_id, str) else None  # None ou NaN : racine
        children.setdefault(parent, []).append(row)
    role = {"prompter": "user", "assistant": "assistant"}
    out = []

    def walk(node, path):
        path = path + [{"role": role[node.role], "content": node.text}]
        kids = sorted(children.get(node.message_id, []), key=lambda r: (r.rank if r.rank == r.rank else 1e9))
        if best_only:
            kids = kids[:1]
        if not kids:
            if path[-1]["role"] == "assistant":
                out.append({"id": node.message_tree_id, "messages": path})
            return
        for kid in kids:
            walk(kid, path)

    for root in children.get(None, []):
        walk(root, [])
    return out


# --------------------------------------------------------------------------
# API publique
# --------------------------------------------------------------------------
def load(name: str, split=None, *, author=None, title=None):
    """Charge un jeu de données par son nom (voir ``NAMES``) et sa partie.

    ``split`` : ``"train"``/``"dev"``/``"test"`` selon le jeu ; ``"top1"`` ou
    ``"all"`` pour ``oasst1_fr`` ; le numéro du tome (1 à 5) pour
    ``miserables``. ``None`` : toutes les parties concaténées (colonne
    ``split``), la partie unique de ``gqnli_fr``, ``"top1"`` pour
    ``oasst1_fr``, les cinq tomes pour ``miserables``. ``author``/``title``
    (sous-chaîne, sans casse) filtrent ``roman19``.
    """
    ds = _get(name)
    if (author is not None or title is not None) and name != "roman19":
        raise ValueError("Les filtres author= et title= ne s'appliquent qu'à roman19.")
    split = _check_split(ds, split)
    if name == "roman19":
        return _load_roman19(author, title)
    if split is None and ds.task == "corpus":
        return "\n\n".join(load(name, volume) for volume in ds.files)
    if split is None:
        parts = [load(name, s).assign(split=s) for s in ds.files]
        return pd.concat(parts, ignore_index=True)
    path = config.data_dir() / ds.folder / ds.files[split]
    if path.is_file():
        return _read_local(ds, split, path)
    if ds.name == "miserables":
        text = _download_text(f"https://www.gutenberg.org/ebooks/{_GUTENBERG[split]}.txt.utf-8", ds, path)
        start, end = text.find("*** START"), text.find("*** END")
        return text[text.find("\n", start) + 1 : end].strip() if start >= 0 and end > start else text
    try:
        return _from_hub(ds, split)
    except Exception as exc:  # noqa: BLE001 - toute erreur du hub devient une erreur française
        _unavailable(ds, path, exc)


def describe(name: str) -> dict:
    """Fiche d'un jeu : titre, tâche, provenance, licence, citation (texte et BibTeX), effectifs."""
    ds = _get(name)
    folder = config.data_dir() / ds.folder
    return {
        "name": ds.name, "title": ds.title, "task": ds.task,
        "splits": [s for s in ds.files] if ds.files else [None],
        "local_path": str(folder), "available_locally": folder.is_dir(),
        "hub_fallback": ds.hub, "license": ds.license, "citation": ds.citation,
        "bibtex": ds.bibtex, "counts": dict(ds.counts), "notes": ds.notes,
        "source_md": str(folder / "SOURCE.md") if (folder / "SOURCE.md").is_file() else None,
    }
