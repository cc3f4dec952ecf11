"""Tests de atelier.anatomie.generation : filtrage et boucle de génération contre transformers."""

import itertools

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LogitsProcessorList,
    PreTrainedTokenizerFast,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from atelier.anatomie.generation import distinct_n, entropy, filter_logits, generate, generate_ids, repetition_rate


def hf_filter(logits, previous_ids, *, temperature, top_k, top_p, repetition_penalty, min_tokens_to_keep=1):
    """Processeurs de transformers dans l'ordre de GenerationMixin._get_logits_processor."""
    procs = LogitsProcessorList()
    if repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(float(repetition_penalty)))
    if temperature != 1.0:
        procs.append(TemperatureLogitsWarper(float(temperature)))
    if top_k != 0:
        procs.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=min_tokens_to_keep))
    if top_p < 1.0:
        procs.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=min_tokens_to_keep))
    return procs(previous_ids, logits.clone())


PARAMS = [
    dict(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0),
    dict(temperature=0.7, top_k=0, top_p=1.0, repetition_penalty=1.0),
    dict(temperature=1.5, top_k=5, top_p=1.0, repetition_penalty=1.0),
    dict(temperature=1.0, top_k=0, top_p=0.9, repetition_penalty=1.0),
    dict(temperature=0.8, top_k=40, top_p=0.95, repetition_penalty=1.3),
    dict(temperature=1.0, top_k=10_000, top_p=1.0, repetition_penalty=1.0),  # top_k > vocabulaire
    dict(temperature=1.0, top_k=0, top_p=1e-6, repetition_penalty=1.0),  # top_p minuscule
    dict(temperature=2.0, top_k=3, top_p=0.5, repetition_penalty=0.7),  # pénalité < 1 : favorise
    dict(temperature=0.3, top_k=1, top_p=1.0, repetition_penalty=1.2),
]


@pytest.mark.parametrize("batch, vocab", [(1, 7), (3, 50), (2, 1000), (4, 32_000)])
@pytest.mark.parametrize("params", PARAMS, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_filter_logits_matches_transformers(batch, vocab, params):
    g = torch.Generator().manual_seed(batch * vocab)
    logits = torch.randn(batch, vocab, generator=g) * 3
    previous = torch.randint(0, vocab, (batch, 12), generator=g)
    ours = filter_logits(logits, previous_ids=previous, **params)
    ref = hf_filter(logits, previous, **params)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    assert torch.equal(logits, torch.randn(batch, vocab, generator=torch.Generator().manual_seed(batch * vocab)) * 3)


@pytest.mark.parametrize("min_keep", [1, 3])
@pytest.mark.parametrize("top_k, top_p", [(2, 1.0), (0, 0.2), (0, 1e-6), (1, 0.01)])
def test_ties_and_min_tokens_to_keep(min_keep, top_k, top_p):
    # Logits entiers : beaucoup d'ex aequo.
    logits = torch.tensor([[2.0, 2.0, 2.0, 1.0, 1.0, 0.0, -1.0, -1.0], [5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    previous = torch.tensor([[0, 3], [1, 1]])
    params = dict(temperature=1.0, top_k=top_k, top_p=top_p, repetition_penalty=1.0, min_tokens_to_keep=min_keep)
    ours = filter_logits(logits, previous_ids=previous, **params)
    torch.testing.assert_close(ours, hf_filter(logits, previous, **params), rtol=0, atol=0)
    assert (ours.isfinite().sum(-1) >= min_keep).all()
    if top_k == 2:  # les trois ex aequo en tête restent tous
        assert ours[0, :3].isfinite().all() and not ours[0, 3:].isfinite().any()


def test_filter_logits_1d_and_penalty_semantics():
    logits = torch.tensor([2.0, -2.0, 0.5, 1.0])
    out = filter_logits(logits, repetition_penalty=2.0, previous_ids=[0, 1, 1])
    torch.testing.assert_close(out, torch.tensor([1.0, -4.0, 0.5, 1.0]))  # positif divisé, négatif multiplié
    assert filter_logits(logits).shape == (4,)
    torch.testing.assert_close(filter_logits(logits, temperature=0.5), logits / 0.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(repetition_penalty=1.2), "previous_ids"),
        (dict(repetition_penalty=1.2, previous_ids=[0, 99]), "hors du vocabulaire"),
        (dict(min_tokens_to_keep=0), "min_tokens_to_keep"),
    ],
)
def test_filter_logits_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        filter_logits(torch.randn(2, 10), **kwargs)


def test_filter_logits_numpy_scalars_and_wrong_types():
    import numpy as np

    out = filter_logits(torch.randn(2, 10), temperature=np.float32(0.7), top_k=np.int64(3), top_p=np.float64(0.9))
    assert torch.isfinite(out).sum(dim=-1).le(3).all()
    with pytest.raises(TypeError, match="top_k doit être un entier ≥ 0"):
        filter_logits(torch.randn(2, 10), top_k=2.5)
    with pytest.raises(TypeError, match="temperature"):
        filter_logits(torch.randn(2, 10), temperature=True)


def test_filter_logits_bad_type():
    with pytest.raises(TypeError, match="flottant"):
        filter_logits(torch.arange(5))
    with pytest.raises(ValueError, match="forme"):
        filter_logits(torch.randn(1, 2, 3))


# --- Boucle de génération ------------------------------------------------------


def _tiny_gpt2(tiny_models, vocab=96):
    return tiny_models.gpt2(vocab_size=vocab, bos_token_id=0, eos_token_id=vocab - 1, pad_token_id=vocab - 1)


def _tiny_gemma(tiny_models, vocab=96):
    model = tiny_models.gemma(vocab_size=vocab, bos_token_id=2, eos_token_id=1, pad_token_id=0)
    with torch.no_grad():  # un modèle aléatoire à poids plus grands produit des suites moins monotones
        model.model.embed_tokens.weight.normal_(0, 1.0)
    return model


MAKERS = {"gpt2": _tiny_gpt2, "gemma": _tiny_gemma}


def _hf_generate(model, ids, **kw):
    with torch.no_grad():
        return model.generate(ids, attention_mask=torch.ones_like(ids), **kw)


@pytest.mark.parametrize("make", sorted(MAKERS))
@pytest.mark.parametrize("penalty", [1.0, 1.5])
def test_greedy_reproduces_model_generate(tiny_models, make, penalty):
    model = MAKERS[make](tiny_models)
    cfg = model.config
    for length in (1, 6):
        ids = torch.randint(3, cfg.vocab_size - 1, (1, length), generator=torch.Generator().manual_seed(length))
        ref = _hf_generate(model, ids, max_new_tokens=25, do_sample=False, repetition_penalty=penalty)
        ours = generate_ids(model, ids, max_new_tokens=25, repetition_penalty=penalty,
                            eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id)
        assert torch.equal(ours, ref)


@pytest.mark.parametrize("make", sorted(MAKERS))
@pytest.mark.parametrize("params", PARAMS[1:5], ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_sampling_reproduces_model_generate_with_same_seed(tiny_models, make, params):
    model = MAKERS[make](tiny_models)
    cfg = model.config
    ids = torch.randint(3, cfg.vocab_size - 1, (1, 4), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(123)
    ref = _hf_generate(model, ids, max_new_tokens=20, do_sample=True, num_return_sequences=3, **params)
    ours = generate_ids(model, ids, max_new_tokens=20, do_sample=True, num_return_sequences=3, seed=123,
                        eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id, **params)
    assert torch.equal(ours, ref)


def test_eos_stops_and_pads_like_transformers(tiny_models):
    model = _tiny_gpt2(tiny_models)
    ids = torch.tensor([[5, 6, 7]])
    free = generate_ids(model, ids, max_new_tokens=10, do_sample=True, num_return_sequences=4, seed=0,
                        temperature=1.5)
    # Prendre comme « fin » un jeton effectivement produit par une des suites.
    eos = int(free[0, 5])
    torch.manual_seed(0)
    ref = _hf_generate(model, ids, max_new_tokens=10, do_sample=True, num_return_sequences=4, temperature=1.5,
                       top_k=0, eos_token_id=eos, pad_token_id=0)
    ours = generate_ids(model, ids, max_new_tokens=10, do_sample=True, num_return_sequences=4, seed=0,
                        temperature=1.5, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(ours, ref)
    assert (ours[0, 6:] == 0).all()


@pytest.fixture(scope="module")
def char_tokenizer():
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["le chat dort sur le canapé", "la nuit tombe sur Paris"], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def test_generate_returns_strings(char_tokenizer, tiny_models):
    model = tiny_models.gpt2(vocab_size=len(char_tokenizer), eos_token_id=char_tokenizer.eos_token_id,
                             pad_token_id=char_tokenizer.eos_token_id)
    outs = generate(model, char_tokenizer, "le chat", max_new_tokens=8, do_sample=True, num_return_sequences=3,
                    seed=1, top_p=0.9)
    assert isinstance(outs, list) and len(outs) == 3 and all(isinstance(o, str) for o in outs)
    again = generate(model, char_tokenizer, "le chat", max_new_tokens=8, do_sample=True, num_return_sequences=3,
                     seed=1, top_p=0.9)
    assert outs == again  # même graine, mêmes textes
    greedy = generate(model, char_tokenizer, "le chat", max_new_tokens=8)
    ids = char_tokenizer("le chat", return_tensors="pt")["input_ids"]
    ref = _hf_generate(model, ids, max_new_tokens=8, do_sample=False)
    assert greedy == [char_tokenizer.decode(ref[0, ids.shape[1]:], skip_special_tokens=True)]
    with pytest.raises(ValueError, match="vide"):
        generate(model, char_tokenizer, "   ")
    with pytest.raises(TypeError, match="chaîne"):
        generate(model, char_tokenizer, ["le chat"])
    with pytest.raises(TypeError, match="inconnu"):
        generate(model, char_tokenizer, "le chat", top_n=3)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, char_tokenizer, "le chat", do_sample=True, temperature=0.0)
    with pytest.raises(ValueError, match="fenêtre de contexte"):
        generate(model, char_tokenizer, "le chat", max_new_tokens=63)
    with pytest.raises(ValueError, match="do_sample=True"):
        generate(model, char_tokenizer, "le chat", num_return_sequences=2)


def test_output_metrics():
    assert distinct_n([[1, 2, 3, 4]], 2) == 1.0
    assert distinct_n([[1, 1, 1, 1, 1]], 1) == pytest.approx(1 / 5)
    assert distinct_n([[1, 2], [1, 2]], 2) == 0.5
    assert repetition_rate([1, 2, 1, 2]) == 0.5
    assert repetition_rate("abc") == 0.0
    uniform = torch.zeros(3, 8)
    torch.testing.assert_close(entropy(uniform), torch.full((3,), torch.log(torch.tensor(8.0)).item()))
    masked = torch.tensor([0.0, 0.0, float("-inf")])
    torch.testing.assert_close(entropy(masked), torch.log(torch.tensor(2.0)))
    with pytest.raises(ValueError):
        distinct_n([[1]], 2)
    with pytest.raises(ValueError):
        repetition_rate([])


@pytest.mark.slow
def test_real_causal_lm_greedy_and_filter():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from atelier.assets.models import model_id

    path = model_id("causal_lm")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    ids = tok("La capitale de la France est", return_tensors="pt")["input_ids"]
    ref = _hf_generate(model, ids, max_new_tokens=12, do_sample=False)
    eos = model.generation_config.eos_token_id
    ours = generate_ids(model, ids, max_new_tokens=12, eos_token_id=eos, pad_token_id=model.generation_config.pad_token_id)
    assert torch.equal(ours, ref)
    with torch.no_grad():
        logits = model(ids).logits[:, -1, :].float()
    for t, k, p, r in itertools.product([0.7, 1.3], [0, 50], [1.0, 0.9], [1.0, 1.3]):
        params = dict(temperature=t, top_k=k, top_p=p, repetition_penalty=r)
        torch.testing.assert_close(filter_logits(logits, previous_ids=ids, **params),
                                   hf_filter(logits, ids, **params), rtol=0, atol=0)


def test_generate_ids_uses_the_given_choice_function():
    """Un chapitre passe sa propre copie de next_token : la boucle l'appelle à chaque pas."""
    import torch

    from transformers import GPT2Config, GPT2LMHeadModel

    from atelier.anatomie import generation as G

    cfg = GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg).eval()
    prompt = torch.tensor([[1, 2, 3]])
    calls = []

    def always_seven(logits, ids, **kw):
        calls.append(ids.shape[1])
        return torch.full((ids.shape[0],), 7)

    out = G.generate_ids(model, prompt, max_new_tokens=4, choose=always_seven)
    assert out[0, 3:].tolist() == [7, 7, 7, 7] and calls == [3, 4, 5, 6]
    assert torch.equal(G.generate_ids(model, prompt, max_new_tokens=4),
                       G.generate_ids(model, prompt, max_new_tokens=4, choose=G.next_token))
    with pytest.raises(TypeError, match="choose"):
        G.generate_ids(model, prompt, max_new_tokens=2, choose="argmax")
