"""Outils du dépôt pour construire et vérifier le livre (hors du paquet ``atelier`` installé).

- ``build`` : paires .md/.ipynb, cache d'exécution, import des notebooks de nbmake ;
- ``sphinx`` : extension Sphinx du livre (``_config.yml``) ;
- ``site`` : vérifications du site construit et de la cellule d'installation ;
- ``typography`` : typographie française et terminologie des chapitres ;
- ``bench`` : banc d'essai des chapitres (``make bench``).

S'utilisent depuis la racine du dépôt : ``python -m tools.build notebooks``.
"""
