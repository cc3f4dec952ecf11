"""NF4 refait à la main : la quantification 4 bits de QLoRA.

Utilisé par le chapitre « LoRA et NF4 : adapter un modèle de chat français »
(``book/04_lora_nf4.md``). Chaque fonction est comparée à bitsandbytes dans
``tests/test_nf4.py`` :

- :data:`NF4_VALUES` : les 16 valeurs NF4 tirées des quantiles de la loi
  normale (égales à la table de bitsandbytes à 1e-6 près) ;
- :func:`quantize_nf4` / :func:`dequantize_nf4` : quantification par blocs
  (absmax, bloc de 64) ; mêmes octets et mêmes valeurs que
  ``bitsandbytes.functional.quantize_4bit(..., quant_type="nf4")`` ;
- :func:`double_quantize_absmax` / :func:`dequantize_absmax` : la double
  quantification des constantes absmax (8 bits, bloc de 256) ;
- :func:`bits_per_parameter` : le coût exact du stockage (4,5 ou 4,127 bits).

Conventions de bitsandbytes reproduites : chaque bloc est divisé par son
maximum absolu, chaque valeur va au code le plus proche (égalité : le code le
plus bas), deux codes par octet avec **le premier élément dans les 4 bits de
poids fort**, et un élément de bourrage égal à 0 (code 7) si le nombre
d'éléments est impair. Le dernier bloc peut être incomplet.
"""

from __future__ import annotations

import math

import torch

from atelier.runtime.checks import check_float, check_int, check_type

__all__ = [
    "NF4_OFFSET",
    "NF4_VALUES",
    "FP4_VALUES",
    "INT4_VALUES",
    "nf4_values",
    "dynamic_map",
    "quantize_4bit",
    "dequantize_4bit",
    "quantize_nf4",
    "dequantize_nf4",
    "pack_codes",
    "unpack_codes",
    "double_quantize_absmax",
    "dequantize_absmax",
    "bits_per_parameter",
    "quantization_error",
]

# Dernier quantile utilisé : milieu entre 1 - 1/(2·16) et 1 - 1/(2·15), comme
# dans QLoRA (offset = 1 - (1/32 + 1/30) / 2 ≈ 0,9677083).
NF4_OFFSET = 0.9677083


def nf4_values(offset: float = NF4_OFFSET) -> tuple[float, ...]:
    """Les 16 valeurs NF4, dérivées des quantiles de la loi normale N(0, 1).

    8 quantiles positifs (de ``offset`` vers 0,5), 7 négatifs, et un zéro exact,
    puis normalisation par le maximum pour tomber dans [-1, 1]. Les quantiles
    sont pris en float32 puis évalués en float64 (comme bitsandbytes).
    """
    if not isinstance(offset, (int, float)) or not 0.5 < offset < 1:
        raise ValueError(f"offset doit être un quantile strictement entre 0,5 et 1, reçu {offset!r}.")
    pos = torch.linspace(offset, 0.5, 9, dtype=torch.float32)[:-1].double()  # 8 quantiles > 0,5
    neg = torch.linspace(offset, 0.5, 8, dtype=torch.float32)[:-1].double()  # 7 quantiles
    values = torch.cat([torch.special.ndtri(pos), torch.zeros(1, dtype=torch.float64), -torch.special.ndtri(neg)])
    values = values.float().sort().values
    values = values / values.max()
    return tuple(float(v) for v in values)


NF4_VALUES: tuple[float, ...] = nf4_values()

# FP4 de bitsandbytes (1 bit de signe, 2 d'exposant, 1 de mantisse), triées.
FP4_VALUES: tuple[float, ...] = tuple(
    sorted(s * v / 12 for s in (1, -1) for v in (0.0, 0.0625, 2, 3, 4, 6, 8, 12))
)
# Entier 4 bits symétrique « absmax » : k/7 pour k = -7…7 (15 niveaux utiles).
INT4_VALUES: tuple[float, ...] = tuple(k / 7 for k in range(-7, 8))


def check_tensor(w, name: str = "w") -> torch.Tensor:
    """``w`` si c'est un tenseur flottant non vide et fini, sinon une erreur qui nomme ``name``."""
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{name} doit être un torch.Tensor, reçu {type(w).__name__}.")
    if not w.is_floating_point():
        raise TypeError(
            f"{name} doit contenir des flottants (float32, float16 ou bfloat16) ; "
            f"reçu {w.dtype} : on ne quantifie pas des entiers."
        )
    if w.numel() == 0:
        raise ValueError(f"{name} est vide : rien à quantifier.")
    if not torch.isfinite(w).all():
        raise ValueError(f"{name} contient des valeurs infinies ou NaN : la quantification absmax les refuse.")
    return w


def check_block_size(block_size) -> int:
    """``block_size`` si c'est un entier strictement positif, sinon une erreur."""
    if isinstance(block_size, bool) or not isinstance(block_size, int):
        raise TypeError(f"block_size doit être un entier, reçu {type(block_size).__name__}.")
    if block_size <= 0:
        raise ValueError(f"block_size doit être un entier strictement positif (64 pour NF4), reçu {block_size}.")
    return block_size


def blockwise_scale(flat: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Divise chaque bloc par son max absolu. Renvoie (valeurs dans [-1, 1], absmax par bloc)."""
    n = flat.numel()
    full = n - n % block_size
    blocks = flat[:full].view(-1, block_size)  # (blocs complets, bloc)
    absmax = blocks.abs().max(dim=1).values  # (blocs complets,)
    # Blocs complets : multiplication par l'inverse, comme bitsandbytes (au dernier bit près).
    scaled = torch.clamp(blocks * (1.0 / absmax.clamp(min=1e-38)).view(-1, 1), -1, 1).reshape(-1)
    if full < n:  # dernier bloc incomplet : bitsandbytes y divise directement
        last_max = flat[full:].abs().max()
        absmax = torch.cat([absmax, last_max.view(1)])
        scaled = torch.cat([scaled, torch.clamp(flat[full:] / last_max.clamp(min=1e-38), -1, 1)])
    return scaled, absmax


def nearest_code(scaled: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Indice de la valeur de ``table`` (triée) la plus proche ; égalité → la plus basse."""
    bounds = (table[:-1] + table[1:]) / 2  # milieux entre valeurs voisines
    return torch.bucketize(scaled, bounds)


def check_codes(codes, pad_code=7) -> torch.Tensor:
    """``codes`` (tenseur d'entiers) à plat en uint8, si chaque code et ``pad_code`` tiennent sur 4 bits (0…15)."""
    check_int("pad_code", pad_code, min=0, max=15)
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes doit être un torch.Tensor d'entiers 0…15, reçu {type(codes).__name__}.")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise TypeError(f"codes doit contenir des entiers 0…15, reçu le type {codes.dtype}.")
    if codes.numel() and (codes.min() < 0 or codes.max() > 15):
        raise ValueError(f"codes doit contenir des entiers 0…15 (4 bits) ; reçu de {codes.min().item()} "
                         f"à {codes.max().item()}.")
    return codes.reshape(-1).to(torch.uint8)


def check_packed(packed, n) -> tuple[torch.Tensor, int]:
    """``(packed à plat, n)`` si ``packed`` est un tenseur uint8 et ``0 ≤ n ≤ 2 × octets``."""
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
        kind = f"un tenseur {packed.dtype}" if isinstance(packed, torch.Tensor) else type(packed).__name__
        raise TypeError(f"packed doit être un tenseur uint8 (deux codes par octet) ; reçu {kind}.")
    packed = packed.reshape(-1)
    n = check_int("n", n, min=0)
    if n > 2 * packed.numel():
        raise ValueError(f"n={n} codes demandés, mais {packed.numel()} octets n'en contiennent que {2 * packed.numel()}.")
    return packed, n


def check_table(values) -> torch.Tensor:
    """Table 4 bits en float32 : de 2 à 16 valeurs finies, triées par ordre croissant, dans [-1, 1]."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"values doit être une suite de nombres (la table 4 bits), reçu {type(values).__name__}.")
    try:
        table = torch.as_tensor(values, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"values doit être une suite de nombres (la table 4 bits), reçu {type(values).__name__}.") from None
    if table.dim() != 1 or not 2 <= table.numel() <= 16:
        raise ValueError(f"Une table 4 bits a de 2 à 16 valeurs (à plat) ; reçu la forme {tuple(table.shape)}.")
    shown = [round(v, 4) for v in table.tolist()]
    if not torch.isfinite(table).all() or table.abs().max() > 1:
        raise ValueError(f"Les valeurs de la table doivent être finies et dans [-1, 1] ; reçu {shown}.")
    if (table[1:] < table[:-1]).any():
        raise ValueError(f"La table doit être triée par ordre croissant (le code le plus proche en dépend) ; reçu {shown}.")
    return table


def _check_dtype(dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype doit être un type flottant de torch (torch.float32…), reçu {dtype!r}.")


def check_quantized(codes, absmax, shape, values, block_size, dtype=torch.float32) -> tuple[torch.Size, torch.Tensor]:
    """Vérifie les entrées de :func:`dequantize_4bit` ; renvoie ``(forme, table)``.

    ``codes`` : uint8, ``ceil(n/2)`` octets ; ``absmax`` : flottants, un par bloc ; ``shape`` : entiers ≥ 0
    de produit ``n``. Si ``n`` est impair, le dernier demi-octet doit être le code de bourrage (celui de 0) :
    une forme d'un élément de moins que les codes (9 valeurs pour 10 codes) est ainsi refusée.
    """
    block_size = check_block_size(block_size)
    _check_dtype(dtype)
    if not isinstance(codes, torch.Tensor) or codes.dtype != torch.uint8:
        raise TypeError("codes doit être le tenseur uint8 renvoyé par la quantification.")
    if not isinstance(absmax, torch.Tensor) or not absmax.is_floating_point():
        raise TypeError(f"absmax doit être le tenseur flottant renvoyé par la quantification, reçu {type(absmax).__name__}.")
    if isinstance(shape, int) or not isinstance(shape, (tuple, list, torch.Size)):
        raise TypeError(f"shape doit être un tuple d'entiers, par exemple (4096, 4096) ; reçu {shape!r}.")
    shape = torch.Size([check_int("shape", d, min=0) for d in shape])
    n = shape.numel()
    n_blocks = math.ceil(n / block_size)
    if codes.numel() != math.ceil(n / 2):
        raise ValueError(f"{codes.numel()} octets de codes pour une forme {tuple(shape)} : il en faut {math.ceil(n / 2)}.")
    if absmax.numel() != n_blocks:
        raise ValueError(f"{absmax.numel()} constantes absmax pour {n_blocks} blocs de {block_size} : incohérent.")
    table = check_table(values)
    pad = int(nearest_code(torch.zeros(1), table))
    if n % 2 and int(codes.reshape(-1)[-1]) & 0x0F != pad:
        raise ValueError(f"Forme {tuple(shape)} : {n} valeurs, mais le dernier octet ne se termine pas par le code de "
                         f"bourrage ({pad}) : ces codes viennent de {n + 1} valeurs, pas de {n}.")
    return shape, table


def check_double_quantized(codes, absmax2, offset, block_size) -> int:
    """Vérifie les entrées de :func:`dequantize_absmax` (un code uint8 par constante, une constante ``absmax2``
    par bloc de ``block_size`` codes, ``offset`` réel fini) ; renvoie ``block_size``."""
    block_size = check_block_size(block_size)
    if not isinstance(codes, torch.Tensor) or codes.dtype != torch.uint8:
        raise TypeError("codes doit être le tenseur uint8 renvoyé par double_quantize_absmax.")
    if not isinstance(absmax2, torch.Tensor) or not absmax2.is_floating_point():
        raise TypeError(f"absmax2 doit être le tenseur flottant renvoyé par double_quantize_absmax, reçu "
                        f"{type(absmax2).__name__}.")
    check_float("offset", offset)
    if absmax2.numel() != math.ceil(codes.numel() / block_size):
        raise ValueError(f"{absmax2.numel()} constantes absmax2 pour {codes.numel()} codes en blocs de {block_size} : "
                         f"il en faut {math.ceil(codes.numel() / block_size)} (même block_size qu'à la quantification ?).")
    return block_size


def pack_codes(codes: torch.Tensor, pad_code: int = 7) -> torch.Tensor:
    """Range deux codes 4 bits par octet, le premier dans les bits de poids fort."""
    codes = check_codes(codes, pad_code)  # entiers 0…15 (pad_code aussi), à plat, en uint8
    if codes.numel() % 2:
        codes = torch.cat([codes, torch.tensor([pad_code], dtype=torch.uint8)])
    return (codes[0::2] << 4) | codes[1::2]  # (ceil(n/2),)


def unpack_codes(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse de :func:`pack_codes` : les ``n`` premiers codes (0…15)."""
    packed, n = check_packed(packed, n)  # octets uint8 à plat ; 0 ≤ n ≤ 2 × octets
    codes = torch.stack([packed >> 4, packed & 0x0F], dim=1).reshape(-1)  # (2·octets,)
    return codes[:n]


def quantize_4bit(w: torch.Tensor, values, block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantification 4 bits par blocs vers une table de 16 valeurs triées dans [-1, 1].

    Renvoie ``(codes, absmax)`` : ``codes`` en uint8 (deux codes par octet,
    ``ceil(n/2)`` octets), ``absmax`` en float32 (un par bloc).
    """
    w = check_tensor(w)
    block_size = check_block_size(block_size)
    table = check_table(values)  # 2 à 16 valeurs finies, triées, dans [-1, 1]
    scaled, absmax = blockwise_scale(w.reshape(-1).float(), block_size)
    codes = nearest_code(scaled, table)  # (n,) entiers 0…15
    zero_code = int(nearest_code(torch.zeros(1), table))
    return pack_codes(codes, pad_code=zero_code), absmax


def dequantize_4bit(codes, absmax, shape, values, block_size: int = 64, dtype=torch.float32) -> torch.Tensor:
    """Inverse de :func:`quantize_4bit` : valeur de la table × absmax du bloc."""
    shape, table = check_quantized(codes, absmax, shape, values, block_size, dtype)  # tailles cohérentes
    n = shape.numel()
    vals = table[unpack_codes(codes, n).long()]  # (n,) dans [-1, 1]
    scale = absmax.float().repeat_interleave(block_size)[:n]  # (n,) absmax de chaque élément
    return (vals * scale).reshape(shape).to(dtype)


def quantize_nf4(w: torch.Tensor, block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantifie ``w`` en NF4 par blocs de ``block_size`` éléments (ordre à plat).

    Renvoie ``(codes, absmax)`` : ``codes`` uint8 de ``ceil(n/2)`` octets
    (deux codes par octet, premier élément dans les bits de poids fort),
    ``absmax`` float32, une constante par bloc (le dernier bloc peut être
    incomplet). Identique à ``bitsandbytes.functional.quantize_4bit(w,
    blocksize=block_size, quant_type="nf4")`` (octets et constantes).
    """
    return quantize_4bit(w, NF4_VALUES, block_size)


def dequantize_nf4(codes, absmax, shape, block_size: int = 64, dtype=torch.float32) -> torch.Tensor:
    """Reconstruit le tenseur de forme ``shape`` à partir des codes NF4 et des absmax."""
    return dequantize_4bit(codes, absmax, shape, NF4_VALUES, block_size, dtype)


def dynamic_map() -> torch.Tensor:
    """Table 8 bits « dynamique » de bitsandbytes (exposant dynamique, signée), 256 valeurs triées.

    Pour un exposant e = 0…6, 2^e valeurs régulièrement réparties dans
    [0,1 ; 1] × 10^(e-6), de signe + et -, plus 0 et 1 : beaucoup de finesse
    près de zéro, moins près de ±1.
    """
    data: list[float] = []
    for e in range(7):
        edges = torch.linspace(0.1, 1, 2**e + 1, dtype=torch.float32)
        means = (edges[:-1] + edges[1:]) / 2.0
        data += (10 ** (e - 6) * means).tolist()
        data += (-(10 ** (e - 6)) * means).tolist()
    data += [0.0, 1.0]
    return torch.tensor(sorted(data), dtype=torch.float32)  # (256,)


def double_quantize_absmax(absmax: torch.Tensor, block_size: int = 256):
    """Double quantification : les constantes absmax (float32) passent en 8 bits.

    On retire la moyenne (``offset``), puis quantification par blocs de
    ``block_size`` (256 dans QLoRA) vers la table :func:`dynamic_map`, au code
    le plus proche. Renvoie ``(codes uint8, absmax2 float32, offset float)``.
    """
    absmax = check_tensor(absmax, "absmax")
    block_size = check_block_size(block_size)
    offset = absmax.float().mean()
    centered = absmax.reshape(-1).float() - offset
    scaled, absmax2 = blockwise_scale(centered, block_size)
    codes = nearest_code(scaled, dynamic_map()).to(torch.uint8)  # (nb_blocs,)
    return codes, absmax2, float(offset)


def dequantize_absmax(codes: torch.Tensor, absmax2: torch.Tensor, offset: float, block_size: int = 256) -> torch.Tensor:
    """Inverse de :func:`double_quantize_absmax` : les constantes absmax approchées."""
    block_size = check_double_quantized(codes, absmax2, offset, block_size)  # tailles cohérentes
    n = codes.numel()
    scale = absmax2.float().repeat_interleave(block_size)[:n]
    return dynamic_map()[codes.reshape(-1).long()] * scale + offset


def bits_per_parameter(block_size: int = 64, double_quant: bool = False, block_size2: int = 256) -> float:
    """Bits stockés par paramètre : 4 bits de code + la part des constantes.

    Sans double quantification : 4 + 32/64 = 4,5 bits. Avec : 4 + 8/64 +
    32/(64·256) = 4,127 bits (la constante de second niveau est en float32).
    """
    block_size = check_block_size(block_size)
    if not check_type("double_quant", double_quant, bool):
        return 4 + 32 / block_size
    block_size2 = check_block_size(block_size2)
    return 4 + 8 / block_size + 32 / (block_size * block_size2)


_TABLES = {"nf4": NF4_VALUES, "fp4": FP4_VALUES, "int4": INT4_VALUES}


def quantization_error(w: torch.Tensor, kind: str = "nf4", block_size: int = 64) -> dict[str, float]:
    """Erreur de quantification 4 bits de ``w`` : ``kind`` parmi ``nf4``, ``fp4``, ``int4``.

    Renvoie l'erreur quadratique moyenne, l'erreur absolue moyenne et l'erreur
    relative ‖w − ŵ‖ / ‖w‖.
    """
    if kind not in _TABLES:
        raise ValueError(f"kind={kind!r} inconnu : valeurs acceptées {', '.join(_TABLES)}.")
    codes, absmax = quantize_4bit(w, _TABLES[kind], block_size)
    w_hat = dequantize_4bit(codes, absmax, w.shape, _TABLES[kind], block_size)
    diff = w.float() - w_hat
    return {
        "mse": float(diff.pow(2).mean()),
        "mae": float(diff.abs().mean()),
        "relative": float(diff.norm() / w.float().norm().clamp(min=1e-30)),
    }
