"""Compter et découper : jetons par mot (« fertilité ») de plusieurs tokeniseurs.

Utilisé par le chapitre « Anatomie d'un LLM » (``book/01_anatomie.md``).

Les fonctions acceptent indifféremment un tokeniseur Hugging Face
(``PreTrainedTokenizerBase``) ou un encodage ``tiktoken`` : les jetons
spéciaux (``<bos>``, ``</s>``…) ne sont jamais comptés.

La fertilité est ici le nombre de jetons du texte divisé par son nombre de
mots, un mot étant une suite de lettres ou de chiffres (« l'homme » compte
deux mots : ``l`` et ``homme``) ; la ponctuation coûte des jetons mais ne
compte pas comme mot.

:func:`train_bpe` refait l'apprentissage des fusions BPE (Sennrich et al., 2016)
comme ``tokenizers.trainers.BpeTrainer`` sur des mots découpés par
``pre_tokenizers.Whitespace`` : mêmes fusions, dans le même ordre.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

from atelier.runtime.checks import check_int

WORD_RE = re.compile(r"\w+", re.UNICODE)
PRE_TOKEN_RE = re.compile(r"\w+|[^\w\s]+")  # le découpage de pre_tokenizers.Whitespace


def _is_tiktoken(tokenizer) -> bool:
    return hasattr(tokenizer, "encode_ordinary") and hasattr(tokenizer, "decode_single_token_bytes")


def encode(tokenizer, text: str) -> list[int]:
    """Identifiants des jetons de ``text``, sans jeton spécial."""
    if not isinstance(text, str):
        raise TypeError(f"text doit être une chaîne de caractères, reçu {type(text).__name__}.")
    if _is_tiktoken(tokenizer):
        return tokenizer.encode_ordinary(text)
    if callable(getattr(tokenizer, "encode", None)):
        # verbose=False : pas d'avertissement « séquence plus longue que le modèle » (on ne fait que compter).
        return list(tokenizer.encode(text, add_special_tokens=False, verbose=False))
    raise TypeError("tokenizer doit être un tokeniseur Hugging Face ou un encodage tiktoken.")


def pieces(tokenizer, text: str) -> list[str]:
    """Morceaux de ``text`` tels que le tokeniseur les découpe, un par jeton.

    Les espaces sont affichées « ▁ » pour tous les tokeniseurs. Un jeton qui ne
    contient qu'une partie des octets d'un caractère (BPE sur octets, repli sur
    octets de SentencePiece) s'affiche comme ses octets, par exemple ``<C3>``.
    """
    out = []
    for token_id in encode(tokenizer, text):
        raw = token_bytes(tokenizer, token_id)
        # Les octets qui ne forment pas un caractère complet sont affichés « <C5> ».
        piece = raw.decode("utf-8", errors="backslashreplace")
        piece = _ESCAPED_BYTE.sub(lambda m: f"<{m.group(1).upper()}>", piece)
        out.append(piece.replace(" ", "▁"))
    return out


_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_ESCAPED_BYTE = re.compile(r"\\x([0-9a-f]{2})")


def _bytes_to_unicode() -> dict[int, str]:
    """Table de GPT-2 : chaque octet ↔ un caractère imprimable (l'espace 0x20 devient « Ġ »)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


_UNICODE_TO_BYTE = {c: b for b, c in _bytes_to_unicode().items()}


def _is_byte_level(tokenizer) -> bool:
    """Vrai pour un BPE sur octets façon GPT-2 (chaque octet noté par un caractère imprimable)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    return type(decoder).__name__ == "ByteLevel"


def token_bytes(tokenizer, token_id: int) -> bytes:
    """Octets UTF-8 que représente un jeton (espace initiale comprise)."""
    size = tokenizer.n_vocab if _is_tiktoken(tokenizer) else len(tokenizer)
    token_id = check_int("token_id", token_id, min=0, max=size - 1)  # un identifiant du vocabulaire
    if _is_tiktoken(tokenizer):
        return tokenizer.decode_single_token_bytes(token_id)
    token = tokenizer.convert_ids_to_tokens(token_id)
    match = _BYTE_FALLBACK.match(token)
    if match:  # SentencePiece avec repli sur octets : « <0xC3> »
        return bytes([int(match.group(1), 16)])
    if _is_byte_level(tokenizer):
        return bytes(_UNICODE_TO_BYTE[c] for c in token)
    return token.replace("▁", " ").encode("utf-8")  # SentencePiece : « ▁ » marque l'espace


def count_words(text: str) -> int:
    """Nombre de mots (suites de lettres ou de chiffres) de ``text``."""
    if not isinstance(text, str):
        raise TypeError(f"text doit être une chaîne de caractères ; reçu {type(text).__name__}.")
    return len(WORD_RE.findall(text))


def fertility(tokenizer, text: str) -> float:
    """Jetons par mot sur ``text`` (voir la définition du module)."""
    if not isinstance(text, str):
        raise TypeError(f"text doit être une chaîne de caractères, reçu {type(text).__name__}.")
    n_words = count_words(text)
    if n_words == 0:
        raise ValueError("Le texte ne contient aucun mot : la fertilité n'est pas définie.")
    return len(encode(tokenizer, text)) / n_words


def word_fertility(tokenizer, words) -> dict[str, int]:
    """Nombre de jetons de chaque mot pris seul, précédé d'une espace (sa forme en milieu de phrase)."""
    if isinstance(words, str):
        raise TypeError("words doit être une liste de mots, pas une chaîne.")
    return {w: len(encode(tokenizer, " " + w)) for w in words}


def check_words(words) -> None:
    """``words`` doit être un dictionnaire {tuple de symboles : effectif entier}."""
    if not isinstance(words, Mapping):
        raise TypeError(f"words doit être un dictionnaire {{tuple de symboles : effectif}} ; reçu {type(words).__name__}.")
    for symbols, n in words.items():
        if not isinstance(symbols, tuple) or not all(isinstance(s, str) for s in symbols):
            raise TypeError(f"words : chaque clé doit être un tuple de chaînes ; reçu {symbols!r}.")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"words : chaque effectif doit être un entier ≥ 0 ; reçu {n!r} pour {symbols!r}.")


def count_pairs(words):
    """Occurrences de chaque paire de symboles voisins ; ``words`` : {tuple de symboles : effectif}."""
    check_words(words)
    pairs = Counter()
    for symbols, n in words.items():
        for pair in zip(symbols, symbols[1:]):
            pairs[pair] += n
    return pairs


def merge_pair(words, pair):
    """Remplace, dans chaque mot, chaque occurrence de ``pair`` par le symbole fusionné."""
    check_words(words)
    if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(s, str) and s for s in pair)):
        raise TypeError(f"pair doit être un tuple de deux symboles (chaînes non vides) ; reçu {pair!r}.")
    merged, out = pair[0] + pair[1], Counter()
    for symbols, n in words.items():
        new, i = [], 0
        while i < len(symbols):
            if symbols[i:i + 2] == pair:
                new.append(merged)
                i += 2
            else:
                new.append(symbols[i])
                i += 1
        out[tuple(new)] += n
    return out


def train_bpe(text, n_merges):
    """Apprend ``n_merges`` fusions BPE sur ``text`` ; renvoie les symboles créés, dans l'ordre.

    À chaque pas, la paire voisine la plus fréquente est fusionnée ; à égalité, la
    paire dont les symboles sont les plus anciens (caractères par ordre Unicode,
    puis fusions par ordre de création), comme ``tokenizers``.
    """
    if not isinstance(text, str):
        raise TypeError(f"text doit être une chaîne de caractères, reçu {type(text).__name__}.")
    if not isinstance(n_merges, int) or isinstance(n_merges, bool) or n_merges < 0:
        raise ValueError(f"n_merges doit être un entier ≥ 0, reçu {n_merges!r}.")
    words = Counter(tuple(w) for w in PRE_TOKEN_RE.findall(text))  # {('c', 'h', 'a', 't'): 12, …}
    rank = {c: i for i, c in enumerate(sorted({c for w in words for c in w}))}  # âge de chaque symbole
    merges = []
    for _ in range(n_merges):
        pairs = count_pairs(words)
        if not pairs:  # chaque mot n'est plus qu'un symbole
            break
        best = max(pairs, key=lambda p: (pairs[p], -rank[p[0]], -rank[p[1]]))
        words = merge_pair(words, best)
        rank[best[0] + best[1]] = len(rank)
        merges.append(best[0] + best[1])
    return merges
