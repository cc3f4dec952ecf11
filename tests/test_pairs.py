"""Chaque chapitre MyST a un notebook jumeau aux cellules identiques, sans sorties."""

import pytest

from tools import build

CHAPTERS = build.chapter_sources()


def test_there_are_chapters():
    assert len(CHAPTERS) >= 1


@pytest.mark.parametrize("md", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_pair_is_identical(md):
    assert build.pair_differences(md) == []


def test_pair_difference_is_detected(tmp_path):
    md = CHAPTERS[0]
    copy = tmp_path / md.name
    copy.write_text(md.read_text("utf-8"), "utf-8")
    nb = md.with_suffix(".ipynb").read_text("utf-8")
    (tmp_path / md.with_suffix(".ipynb").name).write_text(nb, "utf-8")
    assert build.pair_differences(copy) == []
    copy.write_text(md.read_text("utf-8") + "\n```{code-cell} ipython3\nprint('ajout')\n```\n", "utf-8")
    problems = build.pair_differences(copy)
    assert problems and "cellules" in problems[0]


def test_missing_notebook_is_reported(tmp_path):
    md = tmp_path / "01_x.md"
    md.write_text(CHAPTERS[0].read_text("utf-8"), "utf-8")
    assert "absent" in build.pair_differences(md)[0]
