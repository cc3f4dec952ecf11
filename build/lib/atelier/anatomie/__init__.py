"""Chapitre 01, « Anatomie d'un LLM » (``book/01_anatomie.md``) : les mécanismes refaits à la main.

- ``attention`` : attention causale, poids d'attention d'un vrai modèle ;
- ``generation`` : filtrage des logits et boucle d'échantillonnage ;
- ``perplexity`` : perte par jeton et perplexité à fenêtre glissante ;
- ``tokenization`` : découpage, octets des jetons, fertilité.
"""
