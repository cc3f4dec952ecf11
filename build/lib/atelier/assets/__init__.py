"""Modèles et données hors ligne de tous les chapitres.

- ``models`` : un modèle par rôle, livré sur PyPI (profil ``light``) ou pris sur
  le hub (profil ``full``) ; ``python -m atelier.assets.models prepare`` les convertit
  une fois en safetensors (``convert``) ;
- ``data`` : les jeux de données français (fiches dans ``data_catalog``), lus dans
  ``../shared/data`` ;
- ``files/`` : petits fichiers livrés avec le paquet (liste NSM du chapitre 02).
"""
