"""tools.build : empreinte du code des chapitres, invalidation et import du cache."""

import shutil
from pathlib import Path

import nbformat
import pytest

from tools import build


@pytest.fixture()
def mini_repo(tmp_path):
    """Un livre minuscule : un chapitre qui importe atelier.metrics."""
    book_dir = tmp_path / "book"
    book_dir.mkdir()
    md = book_dir / "01_essai.md"
    md.write_text(
        "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
        "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n\n# Essai\n\n"
        "```{code-cell} ipython3\nfrom atelier.metrics import classification_scores\n"
        "print(classification_scores([0, 1], [0, 1])['accuracy'])\n```\n",
        "utf-8",
    )
    return tmp_path, md


def test_chapter_modules_follow_imports(mini_repo):
    _, md = mini_repo
    mods = build.chapter_modules(md)
    assert {"atelier", "atelier.metrics", "atelier.runtime", "atelier.runtime.book", "atelier.runtime.config"} <= set(mods)
    assert "atelier.anatomie.attention" not in mods and not any(m.startswith("tools") for m in mods)


def test_chapter_hash_changes_with_imported_module(mini_repo, monkeypatch, tmp_path):
    _, md = mini_repo
    pkg = tmp_path / "pkg"
    shutil.copytree(build.PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(build, "PACKAGE_DIR", pkg)
    h0 = build.chapter_hash(md)
    (pkg / "anatomie" / "attention.py").write_text("# autre module, non importé\n")
    assert build.chapter_hash(md) == h0
    (pkg / "metrics.py").write_text((pkg / "metrics.py").read_text() + "\n# changement\n")
    assert build.chapter_hash(md) != h0


def test_import_then_invalidate(mini_repo, tmp_path):
    root, md = mini_repo
    cache = tmp_path / "cache"
    executed = tmp_path / "executed"
    executed.mkdir()
    nb = build.read_md_notebook(md)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1.0\n")]
    nbformat.write(nb, executed / "01_essai.ipynb")
    assert build.import_executed(executed, cache, root / "book") == ["01_essai"]
    from jupyter_cache import get_cache

    record = get_cache(str(cache)).match_cache_notebook(build.read_md_notebook(md))
    assert record is not None
    # Le code n'a pas changé : rien n'est périmé.
    build.record_chapter_hashes(root, cache)
    assert build.stale_chapter_docnames(root, cache) == []
    # On simule un changement de code : l'empreinte notée ne correspond plus.
    hashes = build._load_hashes(cache)
    hashes["book/01_essai"] = "ancienne"
    build._hashes_path(cache).write_text(__import__("json").dumps(hashes))
    assert build.stale_chapter_docnames(root, cache) == ["book/01_essai"]
    assert build.invalidate_stale_chapters(root, str(cache)) == ["book/01_essai"]
    with pytest.raises(KeyError):
        get_cache(str(cache)).match_cache_notebook(build.read_md_notebook(md))


# --- sous-paquets : imports absolus, relatifs, paquets, fermeture transitive ------------

def _chapter(book_dir, name, code):
    md = book_dir / f"{name}.md"
    md.write_text(
        "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
        "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n\n# Essai\n\n"
        f"```{{code-cell}} ipython3\n{code}\n```\n",
        "utf-8",
    )
    return md


def test_imported_modules_resolves_subpackages_and_relative_imports():
    got = build.imported_modules("from atelier.anatomie import attention as A\nimport atelier.lora_nf4.sft\n"
                                 "def f():\n    from atelier.runtime.config import seed_everything\n")
    assert {"atelier", "atelier.anatomie", "atelier.anatomie.attention", "atelier.lora_nf4",
            "atelier.lora_nf4.sft", "atelier.runtime", "atelier.runtime.config"} <= got
    # Imports relatifs, depuis un module puis depuis le __init__ d'un paquet.
    assert "atelier.lora_nf4.chat" in build.imported_modules("from .chat import IGNORE_INDEX", "atelier.lora_nf4.sft")
    assert "atelier.runtime.config" in build.imported_modules("from ..runtime import config", "atelier.lora_nf4.sft")
    assert "atelier.finetuning.budget" in build.imported_modules("from . import budget", "atelier.finetuning", True)
    assert "atelier.finetuning.budget" in build.imported_modules("from .budget import APPROACHES",
                                                                 "atelier.finetuning", True)
    # Ni un nom qui n'est pas un module, ni un module absent, ni un autre paquet.
    assert build.imported_modules("from atelier.anatomie.attention import causal_mask\nimport numpy") == {
        "atelier", "atelier.anatomie", "atelier.anatomie.attention"}
    assert build.imported_modules("from atelier.inexistant import x\nfrom tools import build") == {"atelier"}


def test_changed_submodule_marks_exactly_its_chapters_stale(tmp_path, monkeypatch):
    """Modifier un module d'un sous-paquet périme les chapitres qui l'importent, directement ou non, et eux seuls."""
    book_dir = tmp_path / "book"
    book_dir.mkdir()
    _chapter(book_dir, "01_attention", "from atelier.anatomie import attention as A")
    _chapter(book_dir, "02_sft", "import atelier.lora_nf4.sft")            # chat, quantization… par transitivité
    _chapter(book_dir, "03_chat", "from atelier.lora_nf4.chat import IGNORE_INDEX")
    _chapter(book_dir, "04_metriques", "from atelier.metrics import classification_scores")
    _chapter(book_dir, "05_finetuning", "from atelier import finetuning as F")  # le __init__ réexporte tout
    pkg = tmp_path / "pkg"
    shutil.copytree(build.PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(build, "PACKAGE_DIR", pkg)
    cache = tmp_path / "cache"

    def stale_after(*changed):
        build.record_chapter_hashes(tmp_path, cache)
        assert build.stale_chapter_docnames(tmp_path, cache) == []
        for rel in changed:
            path = pkg / rel
            path.write_text(path.read_text("utf-8") + "\n# changement\n", "utf-8")
        return build.stale_chapter_docnames(tmp_path, cache)

    assert stale_after("anatomie/attention.py") == ["book/01_attention"]
    assert stale_after("lora_nf4/quantization.py") == ["book/02_sft", "book/03_chat"]
    assert stale_after("lora_nf4/sft.py") == ["book/02_sft"]
    assert stale_after("lora_nf4/__init__.py") == ["book/02_sft", "book/03_chat"]
    assert stale_after("finetuning/training.py") == ["book/05_finetuning"]
    # fewshot est importé par finetuning ; metrics, par le chapitre 04 et par finetuning.
    assert stale_after("metrics.py") == ["book/04_metriques", "book/05_finetuning"]
    assert stale_after("embeddings/pooling.py") == ["book/05_finetuning"]
    # Un module que personne n'importe ne périme rien ; le socle (runtime) périme tout.
    assert stale_after("embeddings/serve.py") == []
    assert stale_after("runtime/measure.py") == [f"book/{md.stem}" for md in sorted(book_dir.glob("*.md"))]


def test_builds_fail_on_english_numbers_in_outputs():
    """make book et make test lisent les sorties exécutées (tools.outputs) : une faute fait échouer le build."""
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text("utf-8")
    book = makefile.split("\nbook:", 1)[1].split("\n\n", 1)[0]
    test = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "tools.outputs _build/html/book" in book and "tools.typography check" in book
    # jupyter-book écrit les pages là où sont les sources : book/NN_slug.md → _build/html/book/NN_slug.html.
    sources = {p.parent.relative_to(build.BOOK_DIR.parent).as_posix() for p in build.chapter_sources()}
    assert sources == {"book"}, sources
    assert "tools.outputs $(NBMAKE_DIR)" in test
    assert test.index("tools.outputs") < test.index("import-executed")
