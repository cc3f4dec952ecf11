"""Chapitre 02, « Embeddings : local ou API ? » (``book/02_embeddings.md``).

- ``pooling`` : moyenne masquée des jetons et encodage local ;
- ``serve`` : serveur local compatible OpenAI (``python -m atelier.embeddings.serve``) ;
- ``api_client`` : client de ce serveur (ou d'une vraie API), avec reprises.
"""
