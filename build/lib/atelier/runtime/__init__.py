"""Le socle de chaque chapitre : profil, graines et précision (``config``), ouverture et tampon
d'exécution (``book``), mesure du temps et de la mémoire (``measure``).

Utilisé par tous les chapitres : ``from atelier.runtime.book import setup``.
"""
