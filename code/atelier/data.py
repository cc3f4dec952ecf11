"""Jeux de données français du livre, désignés par leur nom, disponibles hors ligne.

Utilisé par tous les chapitres (via ``ctx.use_data(name, split)`` de
:mod:`atelier.book`) ; la préface en affiche les licences (:func:`describe`).

Les fichiers sont lus dans ``atelier.config.data_dir()`` (variable
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

>>> from atelier.data import load
>>> dev = load("xnli_fr", "dev")          # DataFrame de 2 490 lignes
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from atelier import config
from atelier.models import AssetUnavailableError

NLI_LABELS = ("entailment", "neutral", "contradiction")
NLI_LABELS_FR = ("implication", "neutre", "contradiction")


@dataclass(frozen=True)
class Dataset:
    """Fiche d'un jeu de données : dossier local, fichiers par partie, source publique."""

    name: str
    title: str
    task: str
    folder: str
    files: dict  # partie -> fichier(s) dans le dossier
    license: str
    citation: str
    bibtex: str
    hub: str  # source publique de secours (identifiant du hub ou URL)
    counts: dict  # effectifs documentés dans SOURCE.md
    default_split: str | None = None
    notes: str = ""
    hub_splits: dict = field(default_factory=dict)  # partie -> partie sur le hub


_BIB = {
    "xnli": """@inproceedings{conneau2018xnli,
  title = {{XNLI}: Evaluating Cross-lingual Sentence Representations},
  author = {Conneau, Alexis and Rinott, Ruty and Lample, Guillaume and Williams, Adina and Bowman, Samuel R. and Schwenk, Holger and Stoyanov, Veselin},
  booktitle = {Proceedings of the 2018 Conference on Empirical Methods in Natural Language Processing},
  pages = {2475--2485},
  year = {2018}
}""",
    "skandalis": """@inproceedings{skandalis2024french,
  title = {New Datasets for Automatic Detection of Textual Entailment and of Contradictions between Sentences in {F}rench},
  author = {Skandalis, Maximos and Moot, Richard and Retor{\\'e}, Christian and Robillard, Simon},
  booktitle = {Proceedings of the 2024 Joint International Conference on Computational Linguistics, Language Resources and Evaluation (LREC-COLING 2024)},
  pages = {12173--12186},
  address = {Torino, Italy},
  publisher = {ELRA and ICCL},
  year = {2024},
  url = {https://aclanthology.org/2024.lrec-main.1065}
}""",
    "rte3": """@inproceedings{giampiccolo2007rte3,
  title = {The Third {PASCAL} Recognizing Textual Entailment Challenge},
  author = {Giampiccolo, Danilo and Magnini, Bernardo and Dagan, Ido and Dolan, Bill},
  booktitle = {Proceedings of the ACL-PASCAL Workshop on Textual Entailment and Paraphrasing},
  pages = {1--9},
  year = {2007}
}""",
    "gqnli": """@inproceedings{cui2022gqnli,
  title = {Generalized Quantifiers as a Source of Error in Multilingual {NLU} Benchmarks},
  author = {Cui, Ruixiang and Hershcovich, Daniel and S{\\o}gaard, Anders},
  booktitle = {Proceedings of the 2022 Conference of the North American Chapter of the Association for Computational Linguistics: Human Language Technologies},
  pages = {4875--4893},
  year = {2022},
  doi = {10.18653/v1/2022.naacl-main.359}
}""",
    "stsb": """@inproceedings{cer2017semeval,
  title = {{SemEval}-2017 Task 1: Semantic Textual Similarity Multilingual and Crosslingual Focused Evaluation},
  author = {Cer, Daniel and Diab, Mona and Agirre, Eneko and Lopez-Gazpio, I{\\~n}igo and Specia, Lucia},
  booktitle = {Proceedings of the 11th International Workshop on Semantic Evaluation (SemEval-2017)},
  pages = {1--14},
  year = {2017}
}
@misc{may2021stsbmultimt,
  title = {Machine translated multilingual {STS} benchmark dataset},
  author = {May, Philip},
  year = {2021},
  url = {https://github.com/PhilipMay/stsb-multi-mt}
}""",
    "pawsx": """@inproceedings{yang2019pawsx,
  title = {{PAWS-X}: A Cross-lingual Adversarial Dataset for Paraphrase Identification},
  author = {Yang, Yinfei and Zhang, Yuan and Tar, Chris and Baldridge, Jason},
  booktitle = {Proceedings of the 2019 Conference on Empirical Methods in Natural Language Processing and the 9th International Joint Conference on Natural Language Processing (EMNLP-IJCNLP)},
  pages = {3687--3692},
  year = {2019}
}""",
    "sib200": """@inproceedings{adelani2024sib200,
  title = {{SIB-200}: A Simple, Inclusive, and Big Evaluation Dataset for Topic Classification in 200+ Languages and Dialects},
  author = {Adelani, David Ifeoluwa and Liu, Hannah and Shen, Xiaoyu and Vassilyev, Nikita and Alabi, Jesujoba O. and Mao, Yanke and Gao, Haonan and Lee, En-Shiun Annie},
  booktitle = {Proceedings of the 18th Conference of the European Chapter of the Association for Computational Linguistics (EACL 2024)},
  year = {2024}
}""",
    "oasst": """@inproceedings{kopf2023openassistant,
  title = {{OpenAssistant} Conversations -- Democratizing Large Language Model Alignment},
  author = {K{\\"o}pf, Andreas and Kilcher, Yannic and von R{\\"u}tte, Dimitri and Anagnostidis, Sotiris and others},
  booktitle = {Advances in Neural Information Processing Systems 36, Datasets and Benchmarks Track},
  year = {2023}
}
@misc{huang2023vigogne,
  title = {Vigogne: French Instruction-following and Chat Models},
  author = {Huang, Bofeng},
  year = {2023},
  url = {https://github.com/bofenghuang/vigogne}
}""",
    "hugo": """@book{hugo1862miserables,
  title = {Les Mis{\\'e}rables},
  author = {Hugo, Victor},
  year = {1862},
  note = {Texte du domaine public, Project Gutenberg n\\textsuperscript{os} 17489, 17493, 17494, 17518, 17519}
}""",
    "roman19": """@misc{schoch2017textbox,
  title = {textbox 2.0.0: Collection de romans fran{\\c{c}}ais du XIXe si{\\`e}cle (roman19)},
  editor = {Sch{\\"o}ch, Christof and Popp, Stefanie},
  publisher = {CLiGS},
  year = {2017},
  doi = {10.5281/zenodo.376666}
}""",
}

DATASETS: dict[str, Dataset] = {
    "xnli_fr": Dataset(
        "xnli_fr", "XNLI (français)", "nli", "xnli_fr",
        {"dev": "xnli_fr_dev.tsv", "test": "xnli_fr_test.tsv"},
        "CC BY-NC 4.0 (usage non commercial, attribution)",
        "Conneau et al. (2018), XNLI, EMNLP.", _BIB["xnli"], "facebook/xnli (config « fr »)",
        {"dev": 2490, "test": 5010}, notes="Classes exactement équilibrées (830 × 3 et 1 670 × 3).",
        hub_splits={"dev": "validation", "test": "test"},
    ),
    "rte3_fr": Dataset(
        "rte3_fr", "RTE3-FR", "nli", "rte3_fr",
        {"dev": "RTE3-FR-dev-set-3class.tsv", "test": "RTE3-FR-test-gold-3class.tsv"},
        "BSD 2-Clause", "Skandalis et al. (2024), LREC-COLING ; RTE-3 : Giampiccolo et al. (2007).",
        _BIB["skandalis"] + "\n" + _BIB["rte3"], "maximoss/rte3-french", {"dev": 800, "test": 800},
        notes="Classes déséquilibrées (implication ≈ 51 %), prémisses souvent longues.",
        hub_splits={"dev": "validation", "test": "test"},
    ),
    "gqnli_fr": Dataset(
        "gqnli_fr", "GQNLI-FR (quantificateurs)", "nli", "gqnli_fr", {"test": "gqnli.test.fr.tsv"},
        "BSD 2-Clause (original anglais CC BY 4.0)",
        "Skandalis et al. (2024) ; original : Cui et al. (2022), NAACL.", _BIB["skandalis"] + "\n" + _BIB["gqnli"],
        "maximoss/gqnli-fr", {"test": 300}, default_split="test",
        notes="Jeu de test adverse (30 prémisses distinctes) : évaluation seulement.",
        hub_splits={"test": "test"},
    ),
    "stsb_fr": Dataset(
        "stsb_fr", "STS Benchmark traduit (stsb_multi_mt, français)", "sts", "stsb_multi_mt_fr",
        {"train": "stsb-fr-train.csv", "dev": "stsb-fr-dev.csv", "test": "stsb-fr-test.csv"},
        "Licence du STS Benchmark (scores CC BY-SA 4.0, textes selon leurs sources)",
        "Cer et al. (2017), SemEval ; traduction DeepL : May (2021).", _BIB["stsb"],
        "PhilipMay/stsb_multi_mt (config « fr »)", {"train": 5749, "dev": 1500, "test": 1379},
        notes="Traduction automatique non relue ; 51/3/5 paires en double (héritées de STS-B).",
        hub_splits={"train": "train", "dev": "dev", "test": "test"},
    ),
    "pawsx_fr": Dataset(
        "pawsx_fr", "PAWS-X (français)", "paraphrase", "pawsx_fr",
        {"dev": "pawsx_fr_dev.clean.tsv", "test": "pawsx_fr_test.clean.tsv"},
        "Libre pour tout usage (Google LLC, source à citer)", "Yang et al. (2019), PAWS-X, EMNLP.",
        _BIB["pawsx"], "google-research-datasets/paws-x (config « fr »)", {"dev": 1992, "test": 1960},
        notes="Fichiers « clean » : lignes sans étiquette (traduction « NS ») retirées.",
        hub_splits={"dev": "validation", "test": "test"},
    ),
    "sib200_fr": Dataset(
        "sib200_fr", "SIB-200 (fra_Latn)", "topic", "sib200_fr",
        {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"},
        "CC BY-SA 4.0 (phrases de FLORES-200)", "Adelani et al. (2024), SIB-200, EACL.", _BIB["sib200"],
        "Davlan/sib200 (config « fra_Latn »)", {"train": 701, "dev": 99, "test": 204},
        notes="7 catégories déséquilibrées ; phrases courtes.",
        hub_splits={"train": "train", "dev": "validation", "test": "test"},
    ),
    "oasst1_fr": Dataset(
        "oasst1_fr", "OpenAssistant OASST1 (français, version Vigogne)", "dialogue", "oasst1_fr_vigogne",
        {"top1": "oasst_20230412_fr_top1.jsonl", "all": "oasst1_fr_1k.messages.jsonl"},
        "Contenu OASST1 Apache-2.0 ; mise en forme Vigogne CC BY-NC 4.0",
        "Köpf et al. (2023), OpenAssistant Conversations ; Huang (2023), Vigogne.", _BIB["oasst"],
        "OpenAssistant/oasst1 (messages lang == « fr », arbres reconstitués)", {"top1": 256, "all": 1183},
        default_split="top1",
        notes="« all » contient toutes les branches de chaque arbre (263 premières questions "
        "distinctes) : séparer entraînement et test par première question.",
        hub_splits={"top1": ("train", "validation"), "all": ("train", "validation")},
    ),
    "miserables": Dataset(
        "miserables", "Victor Hugo, Les Misérables (5 tomes)", "corpus", "hugo_miserables_gutenberg",
        {1: "hugo_les_miserables_t1_fantine.txt", 2: "hugo_les_miserables_t2_cosette.txt",
         3: "hugo_les_miserables_t3_marius.txt", 4: "hugo_les_miserables_t4_idylle_epopee.txt",
         5: "hugo_les_miserables_t5_jean_valjean.txt"},
        "Domaine public", "Hugo (1862), Les Misérables ; Project Gutenberg.", _BIB["hugo"],
        "https://www.gutenberg.org/ebooks/{17489,17493,17494,17518,17519}", {"all": "≈ 556 000 mots"},
        notes="Tome 1 à 5, ou None pour les cinq à la suite.",
    ),
    "roman19": Dataset(
        "roman19", "Romans français du XIXe siècle (CLiGS textbox, roman19)", "corpus", "roman19_cligs",
        {}, "Domaine public (textes) ; métadonnées CC0", "Schöch & Popp (2017), textbox 2.0.0, CLiGS.",
        _BIB["roman19"], "https://github.com/cligs/textbox (french/roman19)", {"all": "36 romans, ≈ 4,4 M mots"},
        notes="Filtrer avec author=… ou title=… ; métadonnées : roman19_metadata(). "
        "Apostrophes mélangées (’ et ').",
    ),
}

NAMES: tuple[str, ...] = tuple(DATASETS)
_HUB_IDS = {  # identifiant et configuration passés à datasets.load_dataset
    "xnli_fr": ("facebook/xnli", "fr"), "rte3_fr": ("maximoss/rte3-french", None),
    "gqnli_fr": ("maximoss/gqnli-fr", None), "stsb_fr": ("PhilipMay/stsb_multi_mt", "fr"),
    "pawsx_fr": ("google-research-datasets/paws-x", "fr"), "sib200_fr": ("Davlan/sib200", "fra_Latn"),
    "oasst1_fr": ("OpenAssistant/oasst1", None),
}


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
    if split not in ds.files:
        accepted = ", ".join(repr(s) for s in ds.files)
        raise ValueError(f"Partie inconnue pour {ds.name} : {split!r}. Valeurs acceptées : {accepted} ou None.")
    return split


# --------------------------------------------------------------------------
# Lecture des fichiers locaux
# --------------------------------------------------------------------------
def _read_tsv(path: Path) -> pd.DataFrame:
    # TSV sans guillemets (XNLI, PAWS-X) ; le lecteur C de pandas accepte les CRLF de RTE3.
    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False,
                       encoding="utf-8")


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
        return _nli(_read_tsv(path))
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


def _online_ok() -> bool:
    import os

    return not any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
                   for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _hub_load(path: str, name: str | None, split: str):
    """Charge une partie d'un jeu du hub Hugging Face (point d'entrée remplaçable dans les tests)."""
    from datasets import load_dataset

    return load_dataset(path, name, split=split)


def _download_text(url: str, ds: Dataset, folder: Path) -> str:
    import urllib.request

    if not _online_ok():
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
    hub_id, config_name = _HUB_IDS[ds.name]
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
        bad = hf["sentence1"].isin(["", "NS"]) | hf["sentence2"].isin(["", "NS"])
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
