"""atelier.build : empreinte du code des chapitres, invalidation et import du cache."""

import shutil

import nbformat
import pytest

from atelier import build


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
    assert "metrics" in mods and "book" in mods and "config" in mods
    assert "sphinx" not in mods


def test_chapter_hash_changes_with_imported_module(mini_repo, monkeypatch, tmp_path):
    _, md = mini_repo
    pkg = tmp_path / "pkg"
    shutil.copytree(build.PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(build, "PACKAGE_DIR", pkg)
    h0 = build.chapter_hash(md)
    (pkg / "sphinx.py").write_text("# autre module, non importé\n")
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
