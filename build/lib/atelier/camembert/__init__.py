"""Chapitre 03, « CamemBERT ou CamemBERTa ? » (``book/03_camembert.md``).

- ``deberta`` : l'attention désentrelacée de DeBERTa, refaite à la main ;
- ``pretraining`` : petit pré-entraînement MLM de deux modèles jumeaux ;
- ``nli`` : inférence en langue naturelle (XNLI) avec LoRA.
"""
