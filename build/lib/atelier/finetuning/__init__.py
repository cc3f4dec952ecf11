"""Chapitre 05, « Affinage d'embeddings ou de modèle ? » (``book/05_finetuning.md``).

Quatre façons d'adapter un encodeur de phrases à une classification, derrière une même API.
Les quatre approches partent du **même** encodeur (un dossier sentence-transformers :
Transformer + moyenne des jetons) :

``frozen``
    embeddings gelés + régression logistique (scikit-learn) ;
``setfit``
    affinage contrastif de l'encodeur sur des paires « même classe » /
    « classes différentes » (façon SetFit, perte ``CosineSimilarityLoss`` de
    sentence-transformers), puis régression logistique ;
``lora``
    adaptateurs LoRA (peft) dans l'encodeur + tête linéaire, entraînés ensemble ;
``full``
    tous les poids de l'encodeur + tête linéaire.

>>> from atelier import finetuning as F
>>> enc = F.load_encoder(chemin)
>>> res = F.run("lora", enc, textes, etiquettes, textes_test, etiquettes_test, labels=LABELS, seed=0)
>>> res.scores["accuracy"], res.train_seconds, res.delta_peak_mb, res.trainable_params, res.artifact_mb

Chaque résultat donne les scores sur le test, la durée et le surcoût mémoire de
l'entraînement (:func:`atelier.runtime.measure.measure`), le nombre de paramètres
entraînés et la taille sur disque de ce qu'il faut garder en plus du modèle de
base (tokenizer inchangé non compté).

Modules, dans l'ordre où ils s'appuient les uns sur les autres :

- ``fewshot`` : échantillons de k exemples par classe, étiquettes, validation des textes ;
- ``budget`` : approches, :class:`FinetuneConfig` et règle « même budget de calcul » ;
- ``encoders`` : chargement de l'encodeur, embeddings, :class:`FeatureCache`, mesures ;
- ``training`` : boucle AdamW, lots groupés par longueur, paires contrastives ;
- ``classifiers`` : les quatre classifieurs et :func:`make_classifier` ;
- ``experiment`` : :func:`run` (entraîner, mesurer, évaluer) et :func:`training_step_cost` ;
- ``battery`` : la batterie d'oubli (STS-B, PAWS-X, recherche FR→EN, sonde de classification).

Ce paquet réexporte leurs noms publics : ``F.run``, ``F.FinetuneConfig``…
"""

from atelier.finetuning.battery import battery, pair_auc, probe_accuracy, retrieval_top1, sts_spearman
from atelier.finetuning.budget import (
    APPROACH_NAMES,
    APPROACHES,
    DEFAULT_LR,
    FinetuneConfig,
    check_approach,
    same_budget,
    setfit_pairs,
    training_passes,
)
from atelier.finetuning.classifiers import (
    FrozenClassifier,
    MeanPoolClassifier,
    SetFitClassifier,
    TorchClassifier,
    make_classifier,
)
from atelier.finetuning.encoders import (
    FeatureCache,
    autocast,
    dir_size_mb,
    embed,
    is_checkpointing,
    load_encoder,
    pair_cosines,
    release_memory,
    set_checkpointing,
)
from atelier.finetuning.experiment import FinetuneResult, run, training_step_cost
from atelier.parameters import count_parameters
from atelier.finetuning.training import contrastive_finetune, contrastive_pairs, length_grouped_batches, train_loop

__all__ = [
    "APPROACHES", "APPROACH_NAMES", "DEFAULT_LR", "FinetuneConfig", "check_approach", "same_budget", "setfit_pairs",
    "training_passes", "FrozenClassifier", "MeanPoolClassifier", "SetFitClassifier", "TorchClassifier",
    "make_classifier", "FeatureCache", "autocast", "count_parameters", "dir_size_mb", "embed", "is_checkpointing",
    "load_encoder", "pair_cosines", "release_memory", "set_checkpointing", "FinetuneResult", "run",
    "training_step_cost", "contrastive_finetune", "contrastive_pairs", "length_grouped_batches", "train_loop",
    "battery", "pair_auc", "probe_accuracy", "retrieval_top1", "sts_spearman",
]
