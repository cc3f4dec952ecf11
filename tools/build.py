"""Outils du build du livre (appelés par le ``Makefile`` et par :mod:`tools.sphinx`).

- **Paires .md/.ipynb** : chaque chapitre ``book/NN_slug.md`` (MyST) a son
  notebook ``book/NN_slug.ipynb`` sans sorties ; ``notebooks`` les régénère,
  ``check-pairs`` vérifie que leurs cellules sont identiques.
- **Cache d'exécution** : la clé de myst-nb ne dépend que du texte des
  cellules ; on y ajoute l'empreinte des modules d'``atelier`` qu'un chapitre
  importe (directement ou non), pour ré-exécuter un chapitre quand son code
  change.
- **Notebooks exécutés par nbmake** : ``import-executed`` verse leurs sorties
  dans le cache de myst-nb, pour que ``make test`` n'exécute chaque chapitre
  qu'une fois.
- **Rapport** : tampons des chapitres (``_build/runs``) et poids des pages.

Usage : ``python -m tools.build {notebooks,check-pairs,import-executed DIR}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import atelier
from atelier.runtime import config
from atelier.runtime.fmt import nombre
from atelier.runtime.cli import Parser

PACKAGE_DIR = Path(atelier.__file__).resolve().parent
BOOK_DIR = config.REPO_ROOT / "book"
HASHES_FILE = "atelier-hashes.json"
# Modules dont dépend tout chapitre (début et fin de page) : ``setup()`` et ``ctx.stamp()``.
ALWAYS = {"atelier.runtime.book", "atelier.runtime.config", "atelier.runtime.measure"}
# Fichiers livrés avec le paquet (lus par les chapitres) : ils comptent dans l'empreinte.
PACKAGE_FILES = ("assets", "files")


def execution_cache_dir() -> Path:
    """Cache d'exécution de myst-nb, un par profil (les sorties diffèrent d'un profil à l'autre)."""
    return config.build_dir() / ".jupyter_cache" / config.get_profile()


# --- chapitres et paires -------------------------------------------------------

def chapter_sources(book_dir: Path = BOOK_DIR) -> list[Path]:
    """Les chapitres exécutables : ``book/NN_slug.md`` avec un ``kernelspec`` (``ValueError`` s'il n'y en a aucun)."""
    if not Path(book_dir).is_dir():
        raise ValueError(f"book_dir : dossier introuvable : {str(book_dir)!r}.")
    found = sorted(p for p in book_dir.glob("[0-9][0-9]_*.md") if "kernelspec:" in p.read_text("utf-8")[:1000])
    if not found:
        raise ValueError(f"book_dir : aucun chapitre exécutable (NN_slug.md avec kernelspec) dans {str(book_dir)!r}.")
    return found


def read_md_notebook(md: Path):
    """Lit un chapitre MyST comme le fait myst-nb (mêmes cellules, même empreinte de cache)."""
    from myst_nb.core.read import myst_nb_reader_plugin

    return myst_nb_reader_plugin(str(md))


def _cells(nb) -> list[tuple[str, str, list]]:
    return [
        (c.cell_type, c.source.strip(), sorted(c.get("metadata", {}).get("tags", [])))
        for c in nb.cells
    ]


def pair_differences(md: Path) -> list[str]:
    """Différences entre les cellules d'un chapitre .md et de son .ipynb (vide si identiques)."""
    import nbformat

    ipynb = md.with_suffix(".ipynb")
    if not ipynb.exists():
        return [f"{ipynb.name} est absent : lancez `make notebooks`."]
    nb_md = read_md_notebook(md)
    nb_ipynb = nbformat.read(ipynb, as_version=4)
    problems = []
    if any(c.get("outputs") for c in nb_ipynb.cells if c.cell_type == "code"):
        problems.append(f"{ipynb.name} contient des sorties : il doit être commité sans sorties.")
    a, b = _cells(nb_md), _cells(nb_ipynb)
    if len(a) != len(b):
        problems.append(f"{md.name} a {len(a)} cellules, {ipynb.name} en a {len(b)}.")
    for i, (ca, cb) in enumerate(zip(a, b)):
        if ca != cb:
            problems.append(f"cellule {i} : {ca[0]} {ca[2]} « {ca[1][:60]} » ≠ {cb[0]} {cb[2]} « {cb[1][:60]} »")
            break
    if nb_md.metadata.get("kernelspec") != nb_ipynb.metadata.get("kernelspec"):
        problems.append("kernelspec différent entre le .md et le .ipynb.")
    return problems


def write_notebooks(book_dir: Path = BOOK_DIR) -> list[Path]:
    """Régénère le .ipynb (sans sorties) de chaque chapitre à partir de son .md."""
    import jupytext

    written = []
    for md in chapter_sources(book_dir):
        nb = jupytext.read(md)
        for i, cell in enumerate(nb.cells):
            # Identifiants stables (rang + contenu) : régénérer ne change pas le fichier.
            cell.id = f"c{i:03d}-" + hashlib.sha1(cell.source.encode("utf-8")).hexdigest()[:8]
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        jupytext.write(nb, md.with_suffix(".ipynb"), fmt="ipynb")
        written.append(md.with_suffix(".ipynb"))
    return written


# --- empreinte du code importé par un chapitre --------------------------------

def module_file(name: str) -> Path | None:
    """Fichier d'un module d'``atelier`` nommé en entier (``atelier.anatomie.attention``), ou ``None``.

    Un paquet (``atelier.anatomie``) a pour fichier son ``__init__.py``.
    """
    parts = name.split(".")
    if parts[0] != "atelier" or not all(p.isidentifier() for p in parts):
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for path in (base.with_suffix(".py") if len(parts) > 1 else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return path
    return None


def _with_parents(name: str) -> set[str]:
    """Un module et ses paquets parents (les importer exécute aussi leur ``__init__``)."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _absolute(node, module: str, is_package: bool) -> str:
    """Nom complet du module d'un ``from … import`` (imports relatifs résolus depuis ``module``)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def imported_modules(code: str, module: str = "", is_package: bool = False) -> set[str]:
    """Modules d'``atelier`` importés par un code Python (lu avec ``ast``, pas la prose).

    Noms complets, paquets parents compris : ``from atelier.anatomie import attention``
    donne ``atelier``, ``atelier.anatomie`` et ``atelier.anatomie.attention``. ``module``
    (et ``is_package`` pour un ``__init__.py``) situe le code pour les imports relatifs.
    Les imports à l'intérieur des fonctions comptent aussi.
    """
    import ast

    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
    found: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "atelier":
                    found |= _with_parents(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            if base.split(".")[0] != "atelier":
                continue
            found |= _with_parents(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}")}
    return {name for name in found if module_file(name)}


def chapter_modules(md: Path) -> list[str]:
    """Modules d'``atelier`` dont dépend un chapitre (fermeture transitive, noms complets)."""
    cells = [c.source for c in read_md_notebook(md).cells if c.cell_type == "code"]
    todo = set().union(*(imported_modules(c) for c in cells)) | ALWAYS
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        path = module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        todo |= imported_modules(path.read_text("utf-8"), name, path.name == "__init__.py") - seen
    return sorted(seen)


def chapter_hash(md: Path) -> str:
    """Empreinte des modules d'``atelier`` (et fichiers de données du paquet) d'un chapitre."""
    h = hashlib.sha256()
    for name in chapter_modules(md):
        h.update(name.encode() + b"\0" + module_file(name).read_bytes())
    files = PACKAGE_DIR.joinpath(*PACKAGE_FILES)
    for data in sorted(files.glob("*")) if files.is_dir() else []:
        h.update(data.name.encode() + b"\0" + data.read_bytes())
    return h.hexdigest()[:16]


def _hashes_path(cache_dir: Path | None) -> Path:
    return Path(cache_dir or execution_cache_dir()) / HASHES_FILE


def _load_hashes(cache_dir: Path) -> dict[str, str]:
    path = _hashes_path(cache_dir)
    return json.loads(path.read_text()) if path.exists() else {}


def docname(md: Path, srcdir: Path) -> str:
    """Nom Sphinx d'un chapitre (``book/01_anatomie``) relativement au dossier source du livre."""
    return md.resolve().relative_to(Path(srcdir).resolve()).with_suffix("").as_posix()


def stale_chapter_docnames(srcdir, cache_dir: Path | None = None) -> list[str]:
    """Chapitres dont le code ``atelier`` a changé depuis leur dernière exécution en cache."""
    recorded = _load_hashes(cache_dir)
    stale = []
    for md in chapter_sources(Path(srcdir) / "book"):
        doc = docname(md, srcdir)
        if doc in recorded and recorded[doc] != chapter_hash(md):
            stale.append(doc)
    return stale


def invalidate_stale_chapters(srcdir, cache_path: str = "", cache_dir: Path | None = None) -> list[str]:
    """Retire du cache de myst-nb les exécutions des chapitres dont le code a changé."""
    cache_dir = Path(cache_path or cache_dir or execution_cache_dir())
    if not cache_dir.exists():
        return []
    stale = stale_chapter_docnames(srcdir, cache_dir)
    if stale:
        from jupyter_cache import get_cache

        cache = get_cache(str(cache_dir))
        for doc in stale:
            nb = read_md_notebook(Path(srcdir) / f"{doc}.md")
            try:
                record = cache.match_cache_notebook(nb)
            except KeyError:
                continue
            cache.remove_cache(record.pk)
            print(f"[atelier] code modifié : {doc} sera ré-exécuté.")
    return stale


def record_chapter_hashes(srcdir, cache_dir: Path | None = None, docs: list[Path] | None = None) -> None:
    """Note l'empreinte courante des chapitres (après un build ou un import réussi)."""
    cache_dir = Path(cache_dir or execution_cache_dir())
    cache_dir.mkdir(parents=True, exist_ok=True)
    hashes = _load_hashes(cache_dir)
    for md in docs if docs is not None else chapter_sources(Path(srcdir) / "book"):
        hashes[docname(md, srcdir)] = chapter_hash(md)
    _hashes_path(cache_dir).write_text(json.dumps(hashes, indent=1, sort_keys=True))


# --- import des notebooks exécutés par nbmake ---------------------------------

def import_executed(executed_dir: Path, cache_dir: Path | None = None, book_dir: Path = BOOK_DIR) -> list[str]:
    """Verse dans le cache de myst-nb les sorties des notebooks exécutés par nbmake.

    Les sorties sont greffées, cellule par cellule, sur le notebook tel que
    myst-nb lit le ``.md`` : l'empreinte de cache est donc exactement celle que
    le build cherchera. Un notebook dont les cellules diffèrent du ``.md`` est
    ignoré (le build l'exécutera lui-même).
    """
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache_dir = Path(cache_dir or execution_cache_dir())
    cache = get_cache(str(cache_dir))
    imported, docs = [], []
    for md in chapter_sources(book_dir):
        executed = Path(executed_dir) / f"{md.stem}.ipynb"
        if not executed.exists():
            continue
        nb_exec = nbformat.read(executed, as_version=4)
        nb_md = read_md_notebook(md)
        code_md = [c for c in nb_md.cells if c.cell_type == "code"]
        code_ex = [c for c in nb_exec.cells if c.cell_type == "code"]
        if [c.source.strip() for c in code_md] != [c.source.strip() for c in code_ex]:
            print(f"[atelier] {executed.name} ne correspond pas à {md.name} : non importé.")
            continue
        for c_md, c_ex in zip(code_md, code_ex):
            c_md.outputs = c_ex.get("outputs", [])
            c_md.execution_count = c_ex.get("execution_count")
        cache.cache_notebook_bundle(
            CacheBundleIn(nb_md, str(md.resolve()), data={"execution_seconds": None, "source": "nbmake"}),
            check_validity=False, overwrite=True,
        )
        imported.append(md.stem)
        docs.append(md)
    record_chapter_hashes(Path(book_dir).parent, cache_dir, docs)
    return imported


# --- tampons et poids des pages ------------------------------------------------

def load_runs() -> list[dict]:
    """Tampons d'exécution des chapitres (``_build/runs/*.json``), par ordre de chapitre."""
    runs_dir = config.build_dir() / "runs"
    return [json.loads(p.read_text("utf-8")) for p in sorted(runs_dir.glob("*.json"))]


_ASSET = re.compile(r'(?:src|href)="((?:\.\./)*_images/[^"#?]+)"')


def page_weights(outdir: Path) -> dict[str, float]:
    """Poids (Kio) de chaque page : HTML et images qui lui sont propres (hors ressources partagées)."""
    weights = {}
    for page in sorted(Path(outdir).rglob("*.html")):
        rel = page.relative_to(outdir).as_posix()
        if rel.startswith(("_static/", "_sources/")) or rel in {"genindex.html", "search.html"}:
            continue
        html = page.read_text("utf-8", errors="replace")
        size = page.stat().st_size
        for asset in set(_ASSET.findall(html)):
            path = (page.parent / asset).resolve()
            if path.exists():
                size += path.stat().st_size
        weights[rel] = round(size / 1024, 1)
    (Path(outdir).parent / "page-weights.json").write_text(json.dumps(weights, indent=1))
    return weights


def weights_table_html(weights: dict[str, float]) -> str:
    rows = "".join(
        f"<tr><td>{page}</td><td>{nombre(kb)}</td></tr>" for page, kb in weights.items()
    )
    return (
        '<table class="table execution-report"><thead><tr><th>Page</th><th>Poids (Kio)</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m tools.build", description="Outils du build du livre.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("notebooks", help="régénère les .ipynb sans sorties à partir des .md")
    sub.add_parser("check-pairs", help="vérifie que chaque .md et son .ipynb ont les mêmes cellules")
    imp = sub.add_parser("import-executed", help="verse les notebooks exécutés par nbmake dans le cache")
    imp.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    if args.command == "notebooks":
        for path in write_notebooks():
            print(f"écrit : {path.relative_to(config.REPO_ROOT)}")
        return 0
    if args.command == "check-pairs":
        bad = {md.name: pair_differences(md) for md in chapter_sources()}
        bad = {k: v for k, v in bad.items() if v}
        for name, problems in bad.items():
            print(f"{name} : " + " ; ".join(problems))
        return 1 if bad else 0
    if args.command == "import-executed":
        done = import_executed(args.directory)
        print(f"[atelier] sorties importées dans le cache : {', '.join(done) or 'aucune'}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
