"""atelier.lora_nf4.chat : lecture des dialogues, séparation, chat template et étiquettes."""

import json
from pathlib import Path

import pytest
import torch

from atelier.lora_nf4 import chat
from atelier.lora_nf4.chat import IGNORE_INDEX, load_dialogues, split_by_first_prompt, tokenize_conversation

GOOD = {"messages": [{"role": "user", "content": "Bonjour ?"}, {"role": "assistant", "content": "Bonjour !"}]}


def _write(tmp_path, lines, name="dialogues.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tiny_chat_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_chat_path)


def test_load_valid_file_with_blank_lines(tmp_path):
    conv2 = {"id": "x", "messages": [{"role": "system", "content": "Sois bref."}, *GOOD["messages"],
                                      {"role": "user", "content": "Et ensuite ?"}, {"role": "assistant", "content": "Fin."}]}
    path = _write(tmp_path, [json.dumps(GOOD), "", json.dumps(conv2, ensure_ascii=False)])
    convs = load_dialogues(path)
    assert len(convs) == 2
    assert convs[1]["id"] == "x" and len(convs[1]["messages"]) == 5


@pytest.mark.parametrize("bad,pattern", [
    ('{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}', "rôle inconnu 'bot'"),
    ('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}]}', "contenu est vide"),
    ('{"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]}', "commencer par un message « user »"),
    ('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}', "JSON invalide"),
    ('{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}', "alterner"),
    ('{"messages": [{"role": "user", "content": "a"}]}', "se terminer par une réponse"),
    ('{"messages": []}', "liste non vide"),
    ('["user", "assistant"]', "objet JSON"),
    ('{"messages": [{"role": "user"}]}', "« role » et « content »"),
    ('{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]}', "première position"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad, pattern):
    path = _write(tmp_path, [json.dumps(GOOD), json.dumps(GOOD), bad, json.dumps(GOOD)], name="perso.jsonl")
    with pytest.raises(ValueError) as err:
        load_dialogues(path)
    assert "perso.jsonl, ligne 3" in str(err.value)
    assert pattern in str(err.value)


def test_missing_or_empty_file(tmp_path):
    with pytest.raises(ValueError, match="introuvable"):
        load_dialogues(tmp_path / "absent.jsonl")
    with pytest.raises(ValueError, match="aucune conversation"):
        load_dialogues(_write(tmp_path, ["", ""]))


def test_validate_in_memory_list():
    assert chat.validate_dialogues([GOOD]) == [GOOD]
    with pytest.raises(ValueError, match="conversation 2"):
        chat.validate_dialogues([GOOD, {"messages": [{"role": "moi", "content": "x"}]}])
    with pytest.raises(TypeError):
        chat.validate_dialogues("pas une liste")


def test_real_oasst_files_are_valid():
    from atelier.runtime import config

    folder = config.data_dir() / "oasst1_fr_vigogne"
    if not folder.is_dir():
        pytest.skip("données OASST absentes")
    assert len(load_dialogues(folder / "oasst_20230412_fr_top1.jsonl")) == 256
    assert len(load_dialogues(folder / "oasst1_fr_1k.messages.jsonl")) == 1183


def _conv(prompt, answer="ok"):
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def test_split_by_first_prompt_has_no_leak():
    convs = [_conv(f"question {i % 30}", f"réponse {i}") for i in range(120)]  # 4 branches par question
    convs.append(_conv("  QUESTION   3 ", "variante d'espaces et de casse"))
    train, test = split_by_first_prompt(convs, test_fraction=0.2, seed=1)
    assert len(train) + len(test) == len(convs)
    first = lambda c: " ".join(c["messages"][0]["content"].split()).casefold()  # noqa: E731
    assert not {first(c) for c in train} & {first(c) for c in test}
    assert len({first(c) for c in test}) == 6  # 20 % de 30 questions
    assert split_by_first_prompt(convs, 0.2, seed=1) == (train, test)  # déterministe
    assert split_by_first_prompt(convs, 0.2, seed=2) != (train, test)
    with pytest.raises(ValueError, match="test_fraction"):
        split_by_first_prompt(convs, 1.0)
    with pytest.raises(ValueError, match="deux premières questions"):
        split_by_first_prompt([_conv("a"), _conv("a")], 0.5)


def test_split_real_1k_file_by_tree():
    from atelier.runtime import config

    path = config.data_dir() / "oasst1_fr_vigogne" / "oasst1_fr_1k.messages.jsonl"
    if not path.is_file():
        pytest.skip("données OASST absentes")
    convs = load_dialogues(path)
    train, test = split_by_first_prompt(convs, 0.1)
    firsts = lambda cs: {c["messages"][0]["content"] for c in cs}  # noqa: E731
    assert not firsts(train) & firsts(test)
    assert len(firsts(train)) + len(firsts(test)) == 263


MULTI = [
    {"role": "system", "content": "Tu réponds en français."},
    {"role": "user", "content": "Quelle est la capitale de la France ?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "Et de l'Italie ?"},
    {"role": "assistant", "content": "Rome, bien sûr !"},
]


@pytest.mark.parametrize("messages", [GOOD["messages"], MULTI, MULTI[1:]])
def test_labels_cover_exactly_the_assistant_replies(tiny, messages):
    ex = tokenize_conversation(tiny, messages)
    assert len(ex["input_ids"]) == len(ex["labels"]) == len(ex["attention_mask"])
    kept = [t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE_INDEX]
    assert all(lab in (IGNORE_INDEX, t) for t, lab in zip(ex["input_ids"], ex["labels"]))
    expected = "".join(m["content"] + "<|im_end|>\n" for m in messages if m["role"] == "assistant")
    assert tiny.decode(kept) == expected
    assert tiny.decode(ex["input_ids"]) == chat.render(tiny, messages)


def test_labels_match_transformers_assistant_mask(tiny):
    # Référence : le masque de transformers pour un template à balises {% generation %}.
    generation_template = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
        "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' + '\n' }}"
        "{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' + '\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    for messages in (GOOD["messages"], MULTI):
        ref = tiny.apply_chat_template(messages, chat_template=generation_template, tokenize=True,
                                       return_dict=True, return_assistant_tokens_mask=True)
        ours = tokenize_conversation(tiny, messages)
        assert ours["input_ids"] == list(ref["input_ids"])
        assert [int(lab != IGNORE_INDEX) for lab in ours["labels"]] == list(ref["assistant_masks"])


def test_truncation(tiny):
    full = tokenize_conversation(tiny, MULTI)
    cut = tokenize_conversation(tiny, MULTI, max_length=10)
    assert cut["input_ids"] == full["input_ids"][:10] and cut["labels"] == full["labels"][:10]
    with pytest.raises(ValueError, match="max_length"):
        tokenize_conversation(tiny, MULTI, max_length=0)


def test_real_chat_template_if_prepared():
    from transformers import AutoTokenizer

    from atelier.assets import models

    path = models.local_dir("chat")
    if not (path / "tokenizer.json").is_file():
        pytest.skip("modèle de conversation léger pas encore préparé")
    tok = AutoTokenizer.from_pretrained(path)
    ex = tokenize_conversation(tok, MULTI)
    kept = [t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE_INDEX]
    assert tok.decode(kept) == "Paris.<|im_end|>\nRome, bien sûr !<|im_end|>\n"
    # Sans message système, SmolLM2 ajoute le sien : il reste hors de la perte.
    ex = tokenize_conversation(tok, GOOD["messages"])
    assert "SmolLM" in tok.decode(ex["input_ids"])
    assert tok.decode([t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE_INDEX]) == "Bonjour !<|im_end|>\n"


def test_no_chat_template_is_a_clear_error(tiny):
    import copy

    bare = copy.deepcopy(tiny)
    bare.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        chat.render(bare, GOOD["messages"])


def test_history_to_messages_accepts_gradio_formats():
    history = [
        {"role": "user", "content": "Salut"},
        {"role": "assistant", "content": [{"type": "text", "text": "Bonjour !"}]},
    ]
    msgs = chat.history_to_messages(history, "Ça va ?", system_prompt="Sois poli.")
    assert msgs == [{"role": "system", "content": "Sois poli."}, {"role": "user", "content": "Salut"},
                    {"role": "assistant", "content": "Bonjour !"}, {"role": "user", "content": "Ça va ?"}]
    assert chat.history_to_messages(None, {"text": "x"}) == [{"role": "user", "content": "x"}]


def test_generation_parameters_are_checked(tiny):
    with pytest.raises(ValueError, match="max_new_tokens"):
        chat._generation_kwargs(tiny, 0.7, 0.9, 0)
    with pytest.raises(ValueError, match="top_p"):
        chat._generation_kwargs(tiny, 0.7, 0.0, 10)
    with pytest.raises(ValueError, match="temperature"):
        chat._generation_kwargs(tiny, -1.0, 0.9, 10)
    assert chat._generation_kwargs(tiny, 0.0, 0.9, 10)["do_sample"] is False


def test_stream_reply_grows_and_matches_reply(tiny_chat_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_chat_path
    model, tok = AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    msgs = GOOD["messages"][:1]
    parts = list(chat.stream_reply(model, tok, msgs, temperature=0.0, max_new_tokens=12))
    assert parts and all(b.startswith(a) for a, b in zip(parts, parts[1:]))
    assert parts[-1].strip() == chat.reply(model, tok, msgs, temperature=0.0, max_new_tokens=12)


# --------------------------------------------------------------------------- pannes de la génération
def test_generation_failure_and_silence_become_french_errors(tiny_chat_path):
    import time

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(tiny_chat_path).eval(), AutoTokenizer.from_pretrained(tiny_chat_path)
    msgs = GOOD["messages"][:1]

    class Broken(torch.nn.Module):  # generate lève dans le fil : l'erreur doit remonter, pas geler
        device = model.device

        def generate(self, **kw):
            raise RuntimeError("mémoire épuisée")

    with pytest.raises(chat.GenerationError, match="a échoué.*mémoire épuisée"):
        list(chat.stream_reply(Broken(), tok, msgs, max_new_tokens=4))

    class Silent(Broken):  # generate ne produit rien : le délai doit expirer
        def generate(self, **kw):
            time.sleep(2)

    t0 = time.perf_counter()
    with pytest.raises(chat.GenerationError, match="ne répond plus"):
        list(chat.stream_reply(Silent(), tok, msgs, max_new_tokens=4, timeout=0.3))
    assert time.perf_counter() - t0 < 1.5
    with pytest.raises(ValueError, match="temperature"):
        list(chat.stream_reply(model, tok, msgs, temperature=float("nan")))
    with pytest.raises(TypeError, match="temperature"):
        list(chat.stream_reply(model, tok, msgs, temperature="0.7"))


def test_chat_app_shows_errors_to_the_reader_and_limits_concurrency(tiny_chat_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_chat_path)

    class Broken(torch.nn.Module):
        device = torch.device("cpu")

        def generate(self, **kw):
            raise RuntimeError("panne")

    app = chat.build_app(Broken(), tok)
    respond = app.fn
    out = list(respond("Bonjour", [], 0.7, 0.9, 8))
    assert out[-1].startswith("⚠️ La génération a échoué")
    assert list(respond("", [], 0.7, 0.9, 8))[-1].startswith("⚠️ message doit contenir du texte")
    assert app.concurrency_limit == 1


def test_history_to_messages_rejects_bad_input():
    with pytest.raises(ValueError, match="message"):
        chat.history_to_messages([], None)
    with pytest.raises(TypeError, match="history"):
        chat.history_to_messages("historique", "Salut")
