"""L'atelier des LLM : paquet partagé du livre."""
