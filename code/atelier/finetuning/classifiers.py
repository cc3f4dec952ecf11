"""Les quatre classifieurs du chapitre 05 derrière une même interface (``fit``, ``predict``, ``save``).

:func:`make_classifier` construit celui d'une approche : ``frozen`` et
``setfit`` (régression logistique sur les embeddings), ``lora`` et ``full``
(tête linéaire entraînée avec l'encodeur).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from atelier.adapters import add_lora
from atelier.embeddings.pooling import mean_pool  # moyenne masquée du chapitre « Embeddings »
from atelier.finetuning.budget import FinetuneConfig, check_approach, setfit_pairs
from atelier.finetuning.encoders import FeatureCache, autocast, check_encoder, embed, set_checkpointing
from atelier.finetuning.fewshot import check_texts
from atelier.finetuning.training import contrastive_finetune, contrastive_pairs, train_loop
from atelier.parameters import count_parameters
from atelier.probe import head_from_probe
from atelier.runtime.checks import check_int
from atelier.runtime.config import grad_scaler, model_device, to_device

class FrozenClassifier:
    """Embeddings de l'encodeur (partagé, jamais modifié) + régression logistique."""

    approach = "frozen"

    def __init__(self, encoder, n_classes: int, config: FinetuneConfig, cache: FeatureCache | None = None):
        self.encoder, self.n_classes, self.cfg, self.cache = encoder, n_classes, config, cache
        self.head = None

    def encode(self, texts) -> np.ndarray:
        """Embeddings normalisés (N, H) : pour la similarité et les clusters."""
        return embed(self.encoder, texts, prefix=self.cfg.prefix, max_length=self.cfg.max_length,
                     normalize=True, batch_size=self.cfg.encode_batch_size, bf16=self.cfg.bf16)

    def features(self, texts) -> np.ndarray:
        """Ce que voit la tête : embeddings normalisés ou non selon ``config.normalize``."""
        if self.cache is not None:
            return self.cache(texts, normalize=self.cfg.normalize)
        return embed(self.encoder, texts, prefix=self.cfg.prefix, max_length=self.cfg.max_length,
                     normalize=self.cfg.normalize, batch_size=self.cfg.encode_batch_size, bf16=self.cfg.bf16)

    def _fit_head(self, x: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        self.head = LogisticRegression(C=self.cfg.C, max_iter=3000).fit(x, y)

    def fit(self, texts, y, seed: int = 0):
        self._fit_head(self.features(texts), np.asarray(y))
        return self

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        return self.head.predict(x)

    def predict(self, texts) -> np.ndarray:
        return self.predict_features(self.features(texts))

    def trainable_parameters(self) -> int:
        return int(self.head.coef_.size + self.head.intercept_.size)

    def _save_head(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        save_file({"weight": self.head.coef_.astype(np.float32), "bias": self.head.intercept_.astype(np.float32)},
                  str(directory / "head.safetensors"))

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_head(directory)
        return directory


class SetFitClassifier(FrozenClassifier):
    """Copie de l'encodeur affinée par paires contrastives, puis régression logistique."""

    approach = "setfit"

    def __init__(self, encoder, n_classes: int, config: FinetuneConfig):
        super().__init__(copy.deepcopy(encoder), n_classes, config)
        self.losses: list[float] = []

    def fit(self, texts, y, seed: int = 0):
        texts, y = check_texts(texts), np.asarray(y)
        ia, ib, t = contrastive_pairs(y, iterations=self.cfg.pair_iterations, seed=seed,
                                      max_pairs=setfit_pairs(self.cfg, len(texts)))
        self.losses = contrastive_finetune(
            self.encoder, [texts[i] for i in ia], [texts[i] for i in ib], t, loss="cosine",
            epochs=self.cfg.epochs, batch_size=self.cfg.batch_size, lr=self.cfg.lr_for("setfit"), seed=seed,
            freeze_word_embeddings=self.cfg.freeze_word_embeddings,
            prefix=self.cfg.prefix, max_length=self.cfg.max_length, warmup_ratio=self.cfg.warmup_ratio,
            weight_decay=self.cfg.weight_decay, gradient_checkpointing=self.cfg.gradient_checkpointing,
            bf16=self.cfg.bf16)
        self._fit_head(self.features(texts), y)
        return self

    def trainable_parameters(self) -> int:
        return count_parameters(self.encoder) + super().trainable_parameters()

    def save(self, directory: str | Path) -> Path:
        directory = super().save(directory)
        self.encoder[0].auto_model.save_pretrained(directory / "encoder")
        return directory


class MeanPoolClassifier(nn.Module):
    """Transformer (Hugging Face) + moyenne des jetons + tête linéaire."""

    def __init__(self, backbone: nn.Module, n_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.hidden_size, n_classes, device=model_device(backbone))

    def embed(self, input_ids, attention_mask, **kwargs) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state  # (B, T, H)
        return mean_pool(hidden, attention_mask)  # (B, H)

    def forward(self, input_ids, attention_mask, **kwargs) -> torch.Tensor:
        return self.head(self.embed(input_ids, attention_mask, **kwargs))  # (B, C)


class TorchClassifier:
    """LoRA (``lora``) ou tous les poids (``full``) de l'encodeur + tête linéaire, entraînés ensemble."""

    def __init__(self, encoder, n_classes: int, config: FinetuneConfig, approach: str = "full",
                 cache: FeatureCache | None = None):
        if approach not in ("lora", "full"):
            raise ValueError(f"TorchClassifier accepte 'lora' ou 'full', reçu {approach!r}.")
        self.approach, self.cfg, self.n_classes, self.cache = approach, config, n_classes, cache
        self.tokenizer = encoder.tokenizer
        self.model: MeanPoolClassifier | None = None
        self.losses: list[float] = []
        self._base = encoder[0].auto_model

    def build_model(self, seed: int) -> MeanPoolClassifier:
        torch.manual_seed(seed)
        backbone = copy.deepcopy(self._base)
        if self.cfg.gradient_checkpointing:
            set_checkpointing(backbone, True)
        if self.approach == "lora":
            backbone = add_lora(backbone, self.cfg.lora_targets, task=None, r=self.cfg.lora_r,
                                alpha=self.cfg.lora_alpha, dropout=0.0)
        elif self.cfg.freeze_word_embeddings:
            backbone.embeddings.word_embeddings.requires_grad_(False)
        if self.approach == "full" and self.cfg.freeze_layers:
            layers = backbone.encoder.layer
            if self.cfg.freeze_layers > len(layers):
                raise ValueError(f"freeze_layers={self.cfg.freeze_layers} dépasse le nombre de couches ({len(layers)}).")
            for module in [backbone.embeddings, *layers[: self.cfg.freeze_layers]]:
                module.requires_grad_(False)
        return MeanPoolClassifier(backbone, self.n_classes)

    def _batch(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Lot tokenisé, sur le périphérique du modèle (celui de l'encodeur)."""
        batch = self.tokenizer([self.cfg.prefix + t for t in texts], padding=True, truncation=True,
                               max_length=self.cfg.max_length, return_tensors="pt")
        return to_device(batch, model_device(self.model if self.model is not None else self._base))

    def fit(self, texts, y, seed: int = 0):
        texts, y = check_texts(texts), torch.as_tensor(np.asarray(y), dtype=torch.long)
        self.model = model = self.build_model(seed)
        if self.cfg.probe_init:
            self.init_head_from_probe(texts, y.numpy())
        device = model_device(model)
        y = y.to(device)
        model.train()
        body = [p for p in model.backbone.parameters() if p.requires_grad]
        groups = [{"params": body, "lr": self.cfg.lr_for(self.approach)},
                  {"params": list(model.head.parameters()), "lr": self.cfg.head_lr}]

        def compute_loss(idx):
            batch = self._batch([texts[i] for i in idx])
            with autocast(self.cfg.bf16, device):
                logits = model(batch["input_ids"], batch["attention_mask"])  # (B, C)
            return nn.functional.cross_entropy(logits.float(), y[idx])

        lengths = [len(ids) for ids in self.tokenizer([self.cfg.prefix + t for t in texts], truncation=True,
                                                      max_length=self.cfg.max_length)["input_ids"]]
        self.losses = train_loop(compute_loss, groups, len(texts), epochs=self.cfg.epochs,
                                  batch_size=self.cfg.batch_size, seed=seed, warmup_ratio=self.cfg.warmup_ratio,
                                  weight_decay=self.cfg.weight_decay, lengths=lengths,
                                  max_items=self.cfg.max_passes, scaler=grad_scaler(device, enabled=self.cfg.bf16))
        model.eval()
        return self

    def init_head_from_probe(self, texts, y: np.ndarray) -> None:
        """« Linear probing then fine-tuning » : la tête part d'une régression logistique
        ajustée sur les embeddings (encore gelés) des exemples d'entraînement."""
        from sklearn.linear_model import LogisticRegression

        x = self.cache(texts) if self.cache is not None else self.features(texts)
        probe = LogisticRegression(C=self.cfg.C, max_iter=3000).fit(x, y)
        if probe.coef_.shape[0] != self.n_classes:
            raise ValueError(f"Toutes les classes doivent figurer dans l'entraînement ({self.n_classes} attendues).")
        head_from_probe(self.model.head, probe)

    @torch.inference_mode()
    def features(self, texts) -> np.ndarray:
        """Embeddings moyens non normalisés (N, H), ce que voit la tête ; lots triés par longueur."""
        texts = check_texts(texts)
        self.model.eval()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.model.head.in_features), dtype=np.float32)
        bs = self.cfg.encode_batch_size
        for start in range(0, len(texts), bs):
            idx = order[start:start + bs]
            batch = self._batch([texts[i] for i in idx])
            with autocast(self.cfg.bf16, model_device(self.model)):
                out[idx] = self.model.embed(batch["input_ids"], batch["attention_mask"]).float().cpu().numpy()
        return out

    def encode(self, texts) -> np.ndarray:
        x = self.features(texts)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    @torch.inference_mode()
    def predict_features(self, x: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(x, dtype=np.float32)).to(model_device(self.model))
        return self.model.head(x).argmax(-1).cpu().numpy()

    def predict(self, texts) -> np.ndarray:
        return self.predict_features(self.features(texts))

    def trainable_parameters(self) -> int:
        return count_parameters(self.model)

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.model.head.state_dict().items()}, str(directory / "head.safetensors"))
        # LoRA : peft n'écrit que les adaptateurs ; complet : tous les poids de l'encodeur.
        self.model.backbone.save_pretrained(directory / "encoder")
        return directory


def make_classifier(approach: str, encoder, n_classes: int, config: FinetuneConfig | None = None,
                    cache: FeatureCache | None = None):
    """Construit le classifieur d'une approche (``frozen``, ``setfit``, ``lora``, ``full``).

    ``cache`` (:class:`FeatureCache` de ``encoder``, mêmes réglages que ``config``)
    évite de réencoder les textes avec l'encodeur de base (``frozen``, tête de ``lora``/``full``).
    """
    config = FinetuneConfig() if config is None else config
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config doit être un FinetuneConfig, reçu {type(config).__name__}.")
    check_approach(approach)
    check_encoder(encoder)
    n_classes = check_int("n_classes", n_classes, min=2)
    if cache is not None:
        if not isinstance(cache, FeatureCache):
            raise TypeError(f"cache doit être un FeatureCache ou None, reçu {type(cache).__name__}.")
        if not cache.matches(encoder, config):
            raise ValueError("Le cache ne correspond pas : il faut le même encodeur et les mêmes préfixe, "
                             "max_length et bf16 que la configuration.")
    if approach == "frozen":
        return FrozenClassifier(encoder, n_classes, config, cache)
    if approach == "setfit":
        return SetFitClassifier(encoder, n_classes, config)
    return TorchClassifier(encoder, n_classes, config, approach, cache)
