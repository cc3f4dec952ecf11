"""L'atelier des LLM : paquet partagé du livre, rangé comme sa table des matières.

- ``runtime`` : socle de tous les chapitres (profil, graines, précision, tampon, mesures) ;
- ``assets`` : modèles et jeux de données hors ligne ;
- ``anatomie`` (chapitre 01), ``embeddings`` (02), ``camembert`` (03), ``lora_nf4`` (04),
  ``finetuning`` (05) : le code de chaque chapitre ;
- ``metrics``, ``parameters`` : partagés par plusieurs chapitres.

L'outillage du livre (build, extension Sphinx, site, typographie) vit hors du
paquet, dans ``tools/`` à la racine du dépôt.
"""
