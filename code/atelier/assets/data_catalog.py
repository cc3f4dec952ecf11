"""Catalogue des jeux de données du livre : une fiche (:class:`Dataset`) par jeu.

Dossier local, fichiers par partie, licence, citation et BibTeX, source publique
de secours et effectifs documentés. La lecture (``load``, ``describe``) est dans
:mod:`atelier.assets.data`, qui réexporte ces noms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["NLI_LABELS", "NLI_LABELS_FR", "Dataset", "DATASETS", "NAMES", "HUB_IDS", "HUB_FILES", "HUB_SCHEMA"]

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
    quoted: bool = False  # TSV à guillemets CSV (champ entre « " », guillemets intérieurs doublés) : RTE3-FR


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
        hub_splits={"dev": "validation", "test": "test"}, quoted=True,
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
HUB_IDS = {  # identifiant et configuration passés à datasets.load_dataset
    "xnli_fr": ("facebook/xnli", "fr"), "rte3_fr": ("maximoss/rte3-french", None),
    "gqnli_fr": ("maximoss/gqnli-fr", None), "stsb_fr": ("PhilipMay/stsb_multi_mt", "fr"),
    "pawsx_fr": ("google-research-datasets/paws-x", "fr"), "sib200_fr": ("Davlan/sib200", "fra_Latn"),
    "oasst1_fr": ("OpenAssistant/oasst1", None),
}

# Dépôts du hub qui portent (ou portaient encore à la dernière version vérifiée) un script de chargement,
# que datasets ≥ 4 refuse : leurs fichiers de données sont lus directement (partie du hub -> fichier du dépôt).
HUB_FILES = {
    ("Davlan/sib200", "fra_Latn"): {"train": "data/fra_Latn/train.tsv", "validation": "data/fra_Latn/dev.tsv",
                                    "test": "data/fra_Latn/test.tsv"},
    ("google-research-datasets/paws-x", "fr"): {s: f"fr/{s}-00000-of-00001.parquet"
                                                for s in ("train", "validation", "test")},
}

# Ce que le repli sur le hub lit, vérifié sur la carte (README.md) ou le script de chargement de chaque jeu :
# parties du hub, colonnes (dans l'ordre de la carte), étiquettes, et la source consultée. Les doublures
# de la répétition à blanc (tools/full_dry_run.py) ont exactement ces colonnes.
HUB_SCHEMA = {
    "xnli_fr": dict(
        splits=("train", "validation", "test"), columns=("premise", "hypothesis", "label"),
        labels="label : ClassLabel 0 entailment, 1 neutral, 2 contradiction",
        source="https://huggingface.co/datasets/facebook/xnli/blob/4086fcafe44de35eb71c381438a86da03999c2e5/README.md"),
    "rte3_fr": dict(
        splits=("validation", "test"),  # déduites des noms de fichiers (…-dev-set-…, …-test-gold-…) : pas de configs
        columns=("id", "language", "premise", "hypothesis", "label", "label_text", "task", "length"),
        labels="label 0/1/2 et label_text entailment/neutral/contradiction (label_text fait foi)",
        source="https://huggingface.co/datasets/maximoss/rte3-french/tree/main ; champs : "
               "https://huggingface.co/datasets/maximoss/rte3-multi/blob/f78c6a8ac957a394394bfb3bf45617c80bc38322/README.md"),
    "gqnli_fr": dict(
        splits=("test",),  # déduite du nom du fichier unique gqnli.test.fr.tsv
        columns=("uid", "premise", "hypothesis", "label", "label_text", "premise_original", "hypothesis_original"),
        labels="label 0/1/2 et label_text entailment/neutral/contradiction (label_text fait foi)",
        source="https://huggingface.co/datasets/maximoss/gqnli-fr/blob/main/README.md"),
    "stsb_fr": dict(
        splits=("train", "dev", "test"), columns=("sentence1", "sentence2", "similarity_score"),
        labels="similarity_score : float32 de 0 à 5",
        source="https://huggingface.co/datasets/PhilipMay/stsb_multi_mt/commit/e1b7f8617fa83b90b4e7530dac02f1583cc61415"),
    "pawsx_fr": dict(
        splits=("train", "validation", "test"), columns=("id", "sentence1", "sentence2", "label"),
        labels="label : ClassLabel 0 (pas une paraphrase), 1 (paraphrase) ; traductions manquantes « NS » ou vides",
        source="https://huggingface.co/datasets/google-research-datasets/paws-x/tree/24f9c2c15a6d1990dcdcf0728a14b4a5fd3d3b4a/fr"),
    "sib200_fr": dict(
        splits=("train", "validation", "test"),  # fichiers train.tsv, dev.tsv, test.tsv
        columns=("index_id", "category", "text"),
        labels="category : science/technology, travel, politics, sports, health, entertainment, geography",
        source="https://huggingface.co/datasets/Davlan/sib200/raw/380836b2ab7dda501403d3272baff469d759a151/sib200.py"),
    "oasst1_fr": dict(
        splits=("train", "validation"),  # un message par ligne, toutes langues ; arbres reconstitués par parent_id
        columns=("message_id", "parent_id", "user_id", "created_date", "text", "role", "lang", "review_count",
                 "review_result", "deleted", "rank", "synthetic", "model_name", "detoxify", "message_tree_id",
                 "tree_state", "emojis", "labels"),
        labels="role prompter/assistant ; rank : 0 pour la réponse préférée entre sœurs, vide sinon",
        source="https://huggingface.co/datasets/OpenAssistant/oasst1/blob/37d790373da332a4c8be24bd29ec1550e7f04c3f/README.md"),
}
