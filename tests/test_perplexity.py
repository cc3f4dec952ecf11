"""Tests de atelier.anatomie.perplexity : perte de transformers et recette de la fenêtre glissante."""

import math

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from atelier.anatomie.perplexity import perplexity, token_nll

TEXT = (
    "Pendant que le vieux prêtre parlait, la nuit tombait sur la petite ville. "
    "Les rues étaient vides, les volets fermés, et l'on n'entendait plus que le vent. "
) * 3


@pytest.fixture(scope="module")
def tokenizer():
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TEXT], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


@pytest.fixture(scope="module")
def bos_tokenizer(tokenizer):
    """Le même tokeniseur, qui ajoute un jeton <s> en tête (comme Gemma ou Llama)."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.add_special_tokens(["<s>"])
    bos_id = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos_id)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>")
    assert tok("Le")["input_ids"][0] == tok.bos_token_id
    return tok


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tokenizer) + 1, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    return GPT2LMHeadModel(cfg).eval()


def hf_recipe_with_bos(model, input_ids, max_length, stride):
    """La même recette (compte exact), chaque fenêtre commençant par le <bos> du texte."""
    bos, body = input_ids[:, :1], input_ids[:, 1:]
    content = max_length - 1
    seq_len = body.size(1)
    nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + content, seq_len)
        trg_len = end_loc - prev_end_loc
        ids = torch.cat([bos, body[:, begin_loc:end_loc]], dim=1)
        target_ids = ids.clone()
        target_ids[:, : ids.size(1) - trg_len] = -100
        with torch.no_grad():
            loss = model(ids, labels=target_ids).loss
        n = (target_ids[:, 1:] != -100).sum().item()
        nll_sum += loss.item() * n
        n_tokens += n
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return math.exp(nll_sum / n_tokens)


def hf_recipe(model, input_ids, max_length, stride):
    """Recette « Perplexity of fixed-length models » de la documentation de transformers,
    avec le compte exact des jetons prédits dans chaque fenêtre (la version publiée
    pondère chaque fenêtre par « jetons visés − 1 »)."""
    seq_len = input_ids.size(1)
    nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        ids = input_ids[:, begin_loc:end_loc]
        target_ids = ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(ids, labels=target_ids).loss
        n = (target_ids[:, 1:] != -100).sum().item()
        nll_sum += loss.item() * n
        n_tokens += n
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return math.exp(nll_sum / n_tokens)


def test_single_pass_equals_exp_loss(model, tokenizer):
    text = TEXT[:150]
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    assert ids.shape[1] <= 64
    with torch.no_grad():
        loss = model(ids, labels=ids).loss
    assert perplexity(model, tokenizer, text) == pytest.approx(math.exp(loss.item()), rel=1e-5)
    # Une fenêtre glissante qui couvre tout le texte ne change rien.
    assert perplexity(model, tokenizer, text, stride=10) == pytest.approx(math.exp(loss.item()), rel=1e-5)


@pytest.mark.parametrize("max_length, stride", [(64, 64), (64, 32), (64, 17), (40, 3), (24, 12)])
def test_sliding_window_matches_recipe(model, tokenizer, max_length, stride):
    ids = tokenizer(TEXT, return_tensors="pt")["input_ids"]
    assert ids.shape[1] > 64
    ours = perplexity(model, tokenizer, TEXT, stride=stride, max_length=max_length)
    assert ours == pytest.approx(hf_recipe(model, ids, max_length, stride), rel=1e-5)
    # Chaque jeton n'est compté qu'une fois : N - 1 jetons, moins les débuts de fenêtres sans contexte.
    nll = token_nll(model, ids, max_length=max_length, stride=stride)
    n = ids.shape[1]
    skipped = 0 if stride < max_length else (n - 1) // max_length
    assert nll.numel() == n - 1 - skipped


@pytest.mark.parametrize("max_length, stride", [(64, 63), (64, 30), (20, 19), (20, 9)])
def test_sliding_window_restarts_each_window_with_bos(model, bos_tokenizer, max_length, stride):
    ids = bos_tokenizer(TEXT, return_tensors="pt")["input_ids"]
    ours = perplexity(model, bos_tokenizer, TEXT, stride=stride, max_length=max_length)
    assert ours == pytest.approx(hf_recipe_with_bos(model, ids, max_length, stride), rel=1e-5)
    nll = token_nll(model, ids, max_length=max_length, stride=stride, bos_id=bos_tokenizer.bos_token_id)
    assert nll.numel() == ids.shape[1] - 1  # avec <bos>, tous les jetons du texte sont évalués
    # Sans <bos> répété : exactement la recette de la documentation.
    plain = perplexity(model, bos_tokenizer, TEXT, stride=stride, max_length=max_length, prepend_bos=False)
    assert plain == pytest.approx(hf_recipe(model, ids, max_length, stride), rel=1e-5)
    # Une seule fenêtre : les deux variantes coïncident avec la perte de transformers.
    short = TEXT[:60]
    sids = bos_tokenizer(short, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = model(sids, labels=sids).loss.item()
    assert perplexity(model, bos_tokenizer, short) == pytest.approx(math.exp(loss), rel=1e-5)


def test_uniform_model_has_vocabulary_size_perplexity(tokenizer):
    cfg = GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, n_positions=64)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.zero_()  # logits nuls : distribution uniforme
    assert perplexity(model, tokenizer, TEXT[:100]) == pytest.approx(len(tokenizer), rel=1e-5)


def test_bad_input(model, tokenizer):
    with pytest.raises(ValueError, match="vide"):
        perplexity(model, tokenizer, "  ")
    with pytest.raises(TypeError, match="chaîne"):
        perplexity(model, tokenizer, None)
    with pytest.raises(ValueError, match="stride="):
        perplexity(model, tokenizer, TEXT)  # plus long que la fenêtre de 64 jetons
    with pytest.raises(ValueError, match="stride doit"):
        perplexity(model, tokenizer, TEXT, stride=0)
    with pytest.raises(ValueError, match="stride doit"):
        perplexity(model, tokenizer, TEXT, stride=65)
    with pytest.raises(ValueError, match="max_length"):
        perplexity(model, tokenizer, TEXT, stride=8, max_length=1000)
    with pytest.raises(ValueError, match="2 jetons"):
        perplexity(model, tokenizer, "P")
    with pytest.raises(ValueError, match="<bos>"):
        perplexity(model, tokenizer, TEXT[:50], prepend_bos=True)


@pytest.mark.slow
def test_real_causal_lm_perplexity():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from atelier.assets.models import model_id

    path = model_id("causal_lm")
    tok = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path).eval()
    text = "Paris est la capitale de la France. " * 6
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = lm(ids, labels=ids).loss
    assert perplexity(lm, tok, text) == pytest.approx(math.exp(loss.item()), rel=1e-4)
    ours = perplexity(lm, tok, text, stride=16, max_length=32)
    assert ours == pytest.approx(hf_recipe_with_bos(lm, ids, 32, 16), rel=1e-4)
    plain = perplexity(lm, tok, text, stride=16, max_length=32, prepend_bos=False)
    assert plain == pytest.approx(hf_recipe(lm, ids, 32, 16), rel=1e-4)
