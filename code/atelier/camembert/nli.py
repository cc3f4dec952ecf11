"""Inférence en langage naturel (NLI) : données, LoRA, Trainer, prédiction.

Utilisé par le chapitre « CamemBERT ou CamemBERTa ? L'attention
désentrelacée » (``book/03_camembert.md``).

* :func:`standardize` et :func:`make_dataset` : paires (prémisse,
  hypothèse) → ``datasets.Dataset`` tokenisé (troncature à 128 jetons) ;
* :func:`published_config` : configurations publiées de camembert-base et
  camemberta-base, pour instancier les architectures sans téléchargement ;
* :func:`parameter_report` : ce que compte ``print_trainable_parameters`` ;
* :func:`training_arguments`, :func:`make_trainer`, :func:`compute_metrics` :
  le ``Trainer`` de Hugging Face avec les réglages du tutoriel d'origine ;
* :func:`save_modules`, :func:`load_modules` : ce que l'adaptateur ne sauve pas ;
* :func:`predict_proba` : probabilités des trois classes pour des paires ;
* :func:`scores_with_intervals` : exactitude et F1 macro avec intervalles bootstrap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from atelier.assets.data_catalog import NLI_LABELS, NLI_LABELS_FR
from atelier.labels import encode_labels
from atelier.metrics import bootstrap_interval, classification_scores
from atelier.runtime.checks import check_float, check_type

LABELS: tuple[str, ...] = NLI_LABELS  # définies une fois, dans le catalogue des données
LABEL2ID: dict[str, int] = {name: i for i, name in enumerate(LABELS)}
ID2LABEL: dict[int, str] = dict(enumerate(LABELS))
LABELS_FR: dict[str, str] = dict(zip(NLI_LABELS, NLI_LABELS_FR))

# Hyperparamètres du tutoriel d'origine (profil full) : 32 paires par GPU sur deux GPU, soit des lots
# effectifs de 64, reproduits sur un seul GPU par 2 × 32 avec accumulation des gradients.
SEED_HPARAMS = dict(learning_rate=2e-4, batch_size=64, accumulation=2, num_epochs=10, weight_decay=0.01,
                    patience=3, max_length=128, lora_r=8, lora_alpha=32, lora_dropout=0.1)


# Données
def standardize(frame):
    """DataFrame NLI quelconque → colonnes ``premise``, ``hypothesis``, ``label`` (nom anglais de la classe).

    Prend ``label_text`` s'il existe (RTE3-FR, GQNLI-FR), sinon ``label`` ;
    les entiers 0/1/2 sont lus dans l'ordre de :data:`LABELS`. Les étiquettes
    inconnues lèvent l'erreur de :func:`atelier.labels.encode_labels`.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame doit être un pandas.DataFrame, reçu {type(frame).__name__}.")
    col = "label_text" if "label_text" in frame.columns else "label"
    missing = [c for c in ("premise", "hypothesis", col) if c not in frame.columns]
    if missing:
        raise ValueError(f"Colonnes manquantes : {missing} ; colonnes présentes : {list(frame.columns)}.")
    ids = encode_labels(frame[col].tolist(), LABELS)
    return pd.DataFrame({"premise": frame["premise"].astype(str).tolist(),
                         "hypothesis": frame["hypothesis"].astype(str).tolist(),
                         "label": [LABELS[i] for i in ids]})


def make_dataset(frame, tokenizer, max_length: int = 128):
    """DataFrame (``premise``, ``hypothesis``, ``label``) → ``datasets.Dataset`` tokenisé.

    Chaque paire est tokenisée ensemble (``tokenizer(premise, hypothesis)``),
    tronquée à ``max_length`` jetons, **sans** remplissage : le remplissage se
    fait par lot (``DataCollatorWithPadding``), à la longueur du plus long
    exemple du lot. Colonnes produites : ``input_ids``, ``attention_mask``
    (+ ``token_type_ids`` selon le tokeniseur), ``labels``, ``length``.
    """
    import datasets

    missing = [c for c in ("premise", "hypothesis", "label") if c not in getattr(frame, "columns", [])]
    if missing:
        raise ValueError(f"Colonnes manquantes : {missing} ; colonnes attendues premise, hypothesis, label.")
    if not isinstance(max_length, int) or max_length < 8:
        raise ValueError(f"max_length doit être un entier ≥ 8, reçu {max_length!r}.")
    labels = encode_labels(frame["label"].tolist(), LABELS).tolist()
    enc = tokenizer(
        [str(p) for p in frame["premise"]], [str(h) for h in frame["hypothesis"]],
        truncation=True, max_length=max_length,
    )
    data = {k: list(v) for k, v in enc.items()}
    data["labels"] = labels
    data["length"] = [len(ids) for ids in enc["input_ids"]]
    return datasets.Dataset.from_dict(data)


# Architectures publiées (poids aléatoires, aucun téléchargement)
def published_config(name: str, num_labels: int = 3):
    """Configuration publiée de ``camembert-base`` (RoBERTa) ou ``camemberta-base`` (DeBERTa-v2).

    Pour camemberta-base, ``vocab_size=32008`` (32 001 arrondi au multiple de 8)
    et ``conv_kernel_size=3`` (couche de convolution après la première couche,
    défaut du ``DebertaV2Config`` du dépôt CamemBERTa) : c'est ce qui redonne
    exactement le total imprimé dans le tutoriel d'origine.
    """
    from transformers import CamembertConfig, DebertaV2Config

    labels = dict(num_labels=num_labels, id2label=dict(ID2LABEL), label2id=dict(LABEL2ID)) if num_labels == 3 else dict(
        num_labels=num_labels)
    if name == "camembert-base":
        return CamembertConfig(
            vocab_size=32005, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, hidden_act="gelu", max_position_embeddings=514, type_vocab_size=1,
            layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=5, eos_token_id=6, **labels,
        )
    if name == "camemberta-base":
        return DebertaV2Config(
            vocab_size=32008, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, hidden_act="gelu", max_position_embeddings=512, type_vocab_size=0,
            layer_norm_eps=1e-7, pad_token_id=0, relative_attention=True, position_buckets=256,
            max_relative_positions=-1, norm_rel_ebd="layer_norm", share_att_key=True,
            pos_att_type="p2c|c2p", position_biased_input=False, conv_kernel_size=3, conv_act="gelu",
            pooler_hidden_size=768, pooler_dropout=0, pooler_hidden_act="gelu", **labels,
        )
    raise ValueError(f"Modèle inconnu : {name!r}. Modèles acceptés : 'camembert-base', 'camemberta-base'.")


# LoRA
_GROUPS = (  # (motif dans le nom du paramètre, bloc) : le premier motif trouvé l'emporte
    ("lora_", "LoRA"),
    ("word_embeddings", "plongements des mots"),
    ("position_embeddings", "positions absolues"),
    ("token_type_embeddings", "types de segment"),
    ("rel_embeddings", "positions relatives (table et normalisation)"),
    ("encoder.LayerNorm", "positions relatives (table et normalisation)"),
    ("encoder.conv.", "convolution après la 1re couche"),
    ("attention.self", "attention : requêtes, clés, valeurs"),
    ("attention.output.dense", "attention : projection de sortie"),
    ("intermediate.", "propagation avant"),
    ("output.dense", "propagation avant"),
    ("LayerNorm", "normalisations"),
    ("pooler.", "tête : couche dense"),
    ("classifier.dense", "tête : couche dense"),
    ("classifier", "tête : projection vers les classes"),
)


def parameter_groups(model: nn.Module) -> dict[str, int]:
    """Nombre de paramètres par bloc (plongements, attention, propagation avant, tête…)."""
    check_type("model", model, nn.Module)
    out: dict[str, int] = {}
    for name, p in model.named_parameters():
        group = next((g for pattern, g in _GROUPS if pattern in name), "autres")
        out[group] = out.get(group, 0) + p.numel()
    return out


def parameter_report(peft_model: nn.Module) -> dict[str, int | float]:
    """Décompose le décompte de ``print_trainable_parameters`` de ``peft``.

    Clés : ``trainable`` et ``all`` (les deux nombres de ``peft``),
    ``lora`` (matrices A et B), ``head_trainable`` (copies entraînables des
    modules de tête), ``head_frozen_copy`` (les originaux gelés que
    ``ModulesToSaveWrapper`` garde à côté et que ``all`` compte aussi),
    ``model`` (paramètres du modèle sans LoRA ni copie), ``percent``.
    """
    trainable, total = peft_model.get_nb_trainable_parameters()
    lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    head = sum(p.numel() for n, p in peft_model.named_parameters() if ".modules_to_save." in n)
    frozen_copy = sum(p.numel() for n, p in peft_model.named_parameters() if ".original_module." in n)
    return {
        "trainable": int(trainable), "all": int(total), "lora": int(lora), "head_trainable": int(head),
        "head_frozen_copy": int(frozen_copy), "model": int(total - lora - head),
        "percent": 100 * trainable / total,
    }


EXTRA_MODULES_FILE = "modules_hors_adaptateur.safetensors"


def save_modules(model: nn.Module, directory, names: Sequence[str] = ("pooler",)) -> list[str]:
    """Sauve à part (safetensors) les sous-modules nommés ``names`` que ``peft`` ne sauve pas.

    ``save_pretrained`` d'un modèle ``peft`` n'écrit que LoRA et les
    ``modules_to_save`` ; une couche gelée absente du point de contrôle de
    départ (le ``pooler`` d'e5 ou de CamemBERTa, initialisé au hasard au
    chargement) serait tirée à nouveau au rechargement. Renvoie les noms des
    tenseurs écrits dans ``directory/modules_hors_adaptateur.safetensors``.
    """
    from pathlib import Path

    from safetensors.torch import save_file

    if not isinstance(model, nn.Module):
        raise TypeError(f"model doit être un modèle PyTorch (nn.Module), reçu {type(model).__name__}.")
    if isinstance(names, str) or not names or not all(isinstance(n, str) and n for n in names):
        raise TypeError("names doit être une liste non vide de noms de sous-modules, par ex. ('pooler',).")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    state = {f"{n}.{k}": v.detach().cpu().contiguous()
             for n, mod in base.named_modules() if n and n.rsplit(".", 1)[-1] in names
             for k, v in mod.state_dict().items()}
    if not state:
        children = [n for n, _ in base.named_children()]
        raise ValueError(f"Aucun sous-module nommé {list(names)} (ou sans poids) dans {type(base).__name__} ; "
                         f"sous-modules de premier niveau : {children}.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state, str(directory / EXTRA_MODULES_FILE))
    return sorted(state)


def load_modules(model: nn.Module, directory) -> list[str]:
    """Recharge dans ``model`` (avant ``PeftModel.from_pretrained``) ce qu'a écrit :func:`save_modules`."""
    from pathlib import Path

    from safetensors.torch import load_file

    if not isinstance(model, nn.Module):
        raise TypeError(f"model doit être un modèle PyTorch (nn.Module), reçu {type(model).__name__}.")
    path = Path(directory) / EXTRA_MODULES_FILE
    if not path.is_file():
        raise ValueError(f"Fichier introuvable : {path}. Il est écrit par save_modules(model, dossier).")
    state = load_file(str(path))
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"Tenseurs sans place dans {type(model).__name__} : {sorted(result.unexpected_keys)}.")
    return sorted(state)


# Entraînement
def compute_metrics(eval_pred) -> dict[str, float]:
    """Pour le ``Trainer`` : exactitude, F1 macro, F1 pondéré à partir des logits."""
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    return classification_scores(labels, np.argmax(logits, axis=-1))


def training_arguments(output_dir, *, num_epochs: float = 10, eval_steps: int | None = None,
                       learning_rate: float = 2e-4, batch_size: int = 32, weight_decay: float = 0.01,
                       seed: int = 42, group_by_length: bool = False, logging_steps: int = 10,
                       accumulation: int = 1):
    """``TrainingArguments`` du tutoriel d'origine (meilleur modèle choisi sur le F1 macro).

    ``eval_steps=None`` : évaluation et sauvegarde à chaque époque (comme le
    tutoriel) ; un entier : tous les ``eval_steps`` pas (budget CPU).
    Précision mixte : celle d':func:`atelier.runtime.config.compute_dtype` (sur GPU, bf16
    si la carte le calcule, sinon fp16 comme le tutoriel ; sur CPU, bf16
    seulement si le processeur le calcule nativement, sinon float32).
    ``batch_size`` est le lot **effectif** d'un pas d'optimisation :
    chaque lot est calculé en ``accumulation`` morceaux dont on additionne les
    gradients (même optimisation, moins de mémoire), et réparti sur les GPU
    visibles s'il y en a plusieurs (``batch_size = morceau × accumulation ×
    GPU``) ; il doit en être un multiple.
    """
    from transformers import TrainingArguments

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size doit être un entier ≥ 1, reçu {batch_size!r}.")
    check_float("num_epochs", num_epochs, min=0, min_open=True)
    check_float("learning_rate", learning_rate, min=0, min_open=True)
    if not isinstance(accumulation, int) or accumulation < 1 or batch_size % accumulation:
        raise ValueError(f"accumulation doit être un entier ≥ 1 qui divise batch_size ({batch_size}), reçu {accumulation!r}.")

    from atelier.runtime import config

    precision = config.precision_name()
    strategy = "epoch" if eval_steps is None else "steps"
    devices = max(1, torch.cuda.device_count())
    if batch_size % (accumulation * devices):
        raise ValueError(f"batch_size ({batch_size}) doit être un multiple de accumulation × GPU "
                         f"({accumulation} × {devices}).")
    args = TrainingArguments(
        output_dir=str(output_dir), learning_rate=learning_rate,
        per_device_train_batch_size=batch_size // (accumulation * devices), gradient_accumulation_steps=accumulation,
        per_device_eval_batch_size=64,
        num_train_epochs=num_epochs, weight_decay=weight_decay,
        eval_strategy=strategy, save_strategy=strategy, eval_steps=eval_steps, save_steps=eval_steps,
        load_best_model_at_end=True, metric_for_best_model="f1_macro", greater_is_better=True,
        save_total_limit=2, save_only_model=True, logging_steps=logging_steps, seed=seed, data_seed=seed,
        report_to="none", dataloader_num_workers=0,
        disable_tqdm=config.progress_disabled(),  # la progression sert à qui exécute, pas à la page publiée
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        use_cpu=not torch.cuda.is_available(), fp16=precision == "fp16", bf16=precision == "bf16",
    )
    assert args.train_batch_size * accumulation == batch_size, "lot effectif différent de batch_size"
    return args


def make_trainer(model, tokenizer, train_dataset, eval_dataset, args, patience: int = 3, data_collator=None):
    """``Trainer`` avec remplissage par lot, métriques NLI et arrêt précoce (patience ``patience``).

    ``data_collator`` : par défaut ``DataCollatorWithPadding(tokenizer)`` ; pour des vecteurs gardés
    (:class:`atelier.camembert.lpft.CachedPairs`), :func:`atelier.camembert.lpft.pad_cached`.
    """
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, PrinterCallback, Trainer

    trainer = Trainer(
        model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
        data_collator=data_collator or DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=patience)],
    )
    # La perte est une moyenne sur le lot (sans ``num_items_in_batch``) : sans cette ligne, le ``Trainer``
    # ne la diviserait pas par les morceaux accumulés (perte journalisée × ``gradient_accumulation_steps``).
    trainer.model_accepts_loss_kwargs = False
    if args.disable_tqdm:  # sans barre, le Trainer imprimerait chaque journal (gardé dans state.log_history)
        trainer.remove_callback(PrinterCallback)
    return trainer


def history(log_history: list[dict]):
    """Journal du ``Trainer`` → deux DataFrames : perte d'entraînement et évaluations."""
    import pandas as pd

    train = pd.DataFrame([x for x in log_history if "loss" in x and "eval_loss" not in x],
                         columns=["step", "epoch", "loss", "learning_rate", "grad_norm"])
    evals = pd.DataFrame([x for x in log_history if "eval_loss" in x])
    if evals.empty:
        evals = pd.DataFrame(columns=["step", "epoch", "eval_loss", "eval_accuracy", "eval_f1_macro", "eval_f1_weighted"])
    return train, evals


# Prédiction
@torch.no_grad()
def predict_proba(model, tokenizer, premises: Sequence[str], hypotheses: Sequence[str],
                  max_length: int = 128, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Probabilités (N, 3) des classes ``LABELS`` pour N paires.

    Les paires sont triées par longueur pour limiter le remplissage, puis
    remises dans l'ordre d'origine.
    """
    if isinstance(premises, str) or isinstance(hypotheses, str):
        raise TypeError("premises et hypotheses doivent être des listes de chaînes (utilisez [texte] pour une paire).")
    premises, hypotheses = list(premises), list(hypotheses)
    if len(premises) != len(hypotheses) or not premises:
        raise ValueError(f"Il faut autant de prémisses que d'hypothèses, et au moins une ({len(premises)} / {len(hypotheses)}).")
    was_training = model.training
    model.eval()
    enc = tokenizer(premises, hypotheses, truncation=True, max_length=max_length)
    order = np.argsort([len(x) for x in enc["input_ids"]], kind="stable")
    device = next(model.parameters()).device
    out = np.zeros((len(premises), len(LABELS)), dtype=np.float32)
    batches = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="prédiction", unit="lot")
    for start in batches:
        idx = order[start:start + batch_size]
        feats = tokenizer.pad([{k: enc[k][i] for k in enc} for i in idx], return_tensors="pt")
        logits = model(**{k: v.to(device) for k, v in feats.items()}).logits  # (b, 3)
        out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    model.train(was_training)
    return out


def scores_with_intervals(y_true, y_pred, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Exactitude et F1 macro, chacun avec son intervalle bootstrap à 95 % (paires rééchantillonnées).

    ``y_pred`` : (N,) pour un modèle, ou (N, S) pour S graines du même modèle ; le score est
    alors la moyenne des S scores, et le bootstrap tire les mêmes paires pour toutes les graines.
    Renvoie ``{"accuracy": Interval, "f1_macro": Interval}`` ; F1 macro sur les trois classes (absente : 0).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_pred.ndim not in (1, 2) or y_pred.shape[0] != y_true.shape[0]:
        raise ValueError(f"y_true doit être (N,) et y_pred (N,) ou (N, graines), formes {y_true.shape} et {y_pred.shape}.")
    k = len(LABELS)
    if y_true.dtype.kind not in "iu" or y_pred.dtype.kind not in "iu":
        raise ValueError(f"y_true et y_pred doivent contenir des indices de classe entiers (0 à {k - 1}), sans NaN.")
    columns = y_pred[:, None] if y_pred.ndim == 1 else y_pred  # (N, S)

    def f1_macro(t, p):  # matrice de confusion par bincount : rapide dans la boucle du bootstrap
        cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
        tp, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
        return float(np.mean(np.where(support + predicted > 0, 2 * tp / np.maximum(support + predicted, 1), 0.0)))

    def accuracy(t, p):
        return float(np.mean(t == p))

    def over_seeds(metric):
        return lambda t, p: float(np.mean([metric(t, p[:, j]) for j in range(p.shape[1])]))

    return {"accuracy": bootstrap_interval(over_seeds(accuracy), y_true, columns, n_resamples=n_resamples, seed=seed),
            "f1_macro": bootstrap_interval(over_seeds(f1_macro), y_true, columns, n_resamples=n_resamples, seed=seed)}
