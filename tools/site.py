"""Vérifications du site publié et des chemins qui mènent aux chapitres.

Outillage du livre (aucun chapitre ne l'importe) : utilisé par
``tests/test_site.py`` (site construit, liens),
``tests/test_browser.py`` (Chromium) et ``tests/test_launch.py`` (Colab, Binder).

- boutons de lancement (Binder, Colab) et de téléchargement de chaque page ;
- ressources chargées depuis un autre hôte (le site doit marcher hors ligne) ;
- liens internes et ancres ; liste et forme des liens externes ;
- un petit serveur HTTP local (127.0.0.1) pour les tests dans le navigateur.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import re
import subprocess
import threading
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from atelier.runtime import config
from atelier.runtime.cli import Parser

MAX_PAGE_KIB = 2048  # 2 Mo par page de chapitre, hors ressources partagées du site


# --- configuration et pages ---------------------------------------------------------

def book_config(root: Path = config.REPO_ROOT) -> dict:
    """Le ``_config.yml`` du livre."""
    import yaml

    return yaml.safe_load((Path(root) / "_config.yml").read_text(encoding="utf-8"))


def site_dir() -> Path:
    """Le site construit (``_build/html``, ou ``$ATELIER_BUILD/html``)."""
    return config.build_dir() / "html"


def html_pages(site: Path) -> list[Path]:
    """Les pages HTML du site, hors ressources (``_static``) et sources (``_sources``)."""
    site = Path(site)
    return sorted(
        p for p in site.rglob("*.html")
        if p.relative_to(site).parts[0] not in {"_static", "_sources", "_images"}
    )


def notebook_docnames(root: Path = config.REPO_ROOT) -> list[str]:
    """Pages exécutables du livre (``book/NN_slug`` avec un kernelspec) : elles ont un notebook."""
    from tools import build

    return [build.docname(md, root) for md in build.chapter_sources(Path(root) / "book")]


@functools.lru_cache(maxsize=64)
def _soup(path: Path, mtime: float):
    from bs4 import BeautifulSoup

    return BeautifulSoup(Path(path).read_text(encoding="utf-8", errors="replace"), "html.parser")


def soup(path: Path):
    """Page HTML analysée (mise en cache tant que le fichier ne change pas)."""
    path = Path(path)
    return _soup(path, path.stat().st_mtime)


# --- boutons de lancement et de téléchargement ---------------------------------------

def _repo_parts(cfg: dict) -> tuple[str, str, str]:
    url = cfg["repository"]["url"].rstrip("/")
    parts = urlsplit(url)
    if parts.netloc != "github.com" or len(parts.path.strip("/").split("/")) != 2:
        raise ValueError(f"URL du dépôt inattendue dans _config.yml : {url!r} (attendu : https://github.com/ORG/DEPOT).")
    org, repo = parts.path.strip("/").split("/")
    return org, repo, cfg["repository"].get("branch", "main")


def launch_links(page: Path, cfg: dict) -> dict[str, str]:
    """Boutons de lancement d'une page : ``{"Binder": url, "Colab": url}`` (ceux présents)."""
    buttons = cfg.get("launch_buttons", {})
    prefixes = {
        "Binder": buttons.get("binderhub_url", "").rstrip("/") + "/v2/",
        "Colab": buttons.get("colab_url", "").rstrip("/") + "/github/",
    }
    found: dict[str, str] = {}
    for a in soup(page).find_all("a", href=True):
        for provider, prefix in prefixes.items():
            if len(prefix) > 6 and a["href"].startswith(prefix):
                found[provider] = a["href"]
    return found


def notebook_path(provider: str, url: str, cfg: dict) -> str:
    """Chemin, dans le dépôt, du notebook qu'ouvre un lien de lancement ; ``ValueError`` sinon."""
    org, repo, branch = _repo_parts(cfg)
    parts = urlsplit(url)
    segments = [unquote(s) for s in parts.path.strip("/").split("/")]
    if provider == "Binder":
        expected = ["v2", "gh", org, repo, branch]
        if segments != expected:
            raise ValueError(f"lien Binder vers {'/'.join(segments)!r}, attendu {'/'.join(expected)!r}")
        urlpath = parse_qs(parts.query).get("urlpath", [""])[0]
        for prefix in ("lab/tree/", "tree/", "notebooks/"):
            if urlpath.startswith(prefix):
                return urlpath[len(prefix):]
        raise ValueError(f"lien Binder sans chemin de notebook (urlpath={urlpath!r})")
    if provider == "Colab":
        expected = ["github", org, repo, "blob", branch]
        if segments[:5] != expected or len(segments) < 6:
            raise ValueError(f"lien Colab vers {'/'.join(segments[:5])!r}, attendu {'/'.join(expected)!r}")
        return "/".join(segments[5:])
    raise ValueError(f"fournisseur inconnu : {provider!r} (acceptés : Binder, Colab)")


def tracked_files(branch: str, root: Path = config.REPO_ROOT) -> tuple[set[str], str]:
    """Fichiers suivis par git sur la branche configurée (ou, à défaut, au commit courant)."""
    for ref in (branch, f"origin/{branch}", "HEAD"):
        run = subprocess.run(
            ["git", "ls-tree", "-r", "--name-only", ref], cwd=root, capture_output=True, text=True, timeout=60
        )
        if run.returncode == 0:
            return set(run.stdout.splitlines()), ref
    raise ValueError(f"{root} n'est pas un dépôt git lisible : impossible de lister les fichiers suivis.")


def download_links(page: Path) -> list[str]:
    """Liens du menu de téléchargement d'une page (relatifs à la page)."""
    menu = soup(page).select(".dropdown-download-buttons a[href]")
    return [a["href"] for a in menu]


# --- hors ligne ---------------------------------------------------------------------

_REMOTE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)
_CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])\s*((?:[a-z][a-z0-9+.-]*:)?//[^'")\s]+)""", re.IGNORECASE)
_RESOURCE_ATTRS = {
    "script": "src", "img": "src", "iframe": "src", "source": "src", "video": "src", "audio": "src",
    "embed": "src", "track": "src", "input": "src", "object": "data", "link": "href",
}
_NON_RESOURCE_RELS = {"canonical", "alternate", "search", "index", "next", "prev", "author", "license", "help"}


def remote_resources_in_html(html_soup) -> list[str]:
    """Ressources (scripts, styles, polices, images, cadres) qu'une page chargerait depuis un autre hôte."""
    found = []
    for tag, attr in _RESOURCE_ATTRS.items():
        for el in html_soup.find_all(tag):
            if tag == "link" and set(el.get("rel") or []) <= _NON_RESOURCE_RELS and el.get("rel"):
                continue
            for value in [el.get(attr) or ""] + (el.get("srcset") or "").split(","):
                if _REMOTE.match(value):
                    found.append(f"<{tag} {attr}={value.strip()}>")
    for el in html_soup.find_all(style=True):
        found += [f"style : {u}" for u in _CSS_URL.findall(el["style"])]
    for el in html_soup.find_all("style"):
        found += [f"<style> : {u}" for u in _CSS_URL.findall(el.get_text())]
    return found


def remote_resources_in_css(site: Path) -> list[str]:
    """``url(…)`` et ``@import`` distants dans les feuilles de style du site."""
    found = []
    for css in sorted(Path(site).rglob("*.css")):
        for url in _CSS_URL.findall(css.read_text(encoding="utf-8", errors="replace")):
            found.append(f"{css.relative_to(site)} : {url}")
    return found


# --- liens ----------------------------------------------------------------------------

_SKIP_SCHEMES = ("mailto:", "javascript:", "data:", "tel:")


LINKCHECKER_RC = Path(__file__).resolve().parent / "linkcheckerrc"


def internal_link_problems(site: Path) -> list[str]:
    """Liens et ancres internes du site qui ne mènent nulle part, d'après LinkChecker (vide si tout va bien).

    LinkChecker parcourt le site à partir de ``index.html``, fichiers locaux
    seulement (``tools/linkcheckerrc``) ; une erreur (fichier absent) ou un
    avertissement (ancre absente) est un problème.
    """
    import subprocess
    import sys

    index = Path(site).resolve() / "index.html"
    if not index.is_file():
        raise ValueError(f"{index} n'existe pas : construisez d'abord le site.")
    # Lancé par root, LinkChecker lit le site en tant que « nobody », qui n'a pas toujours le droit
    # de traverser les dossiers du dépôt : on garde l'utilisateur courant (site local, lecture seule).
    launcher = ("import sys, linkcheck.command.linkchecker as lc; lc.drop_privileges = lambda: None; "
                "sys.argv[0] = 'linkchecker'; lc.linkchecker()")
    run = subprocess.run([sys.executable, "-c", launcher, "-f", str(LINKCHECKER_RC), "--no-robots", "-o", "text",
                          str(index)], capture_output=True, text=True, timeout=900)
    problems, block = [], {}
    for line in run.stdout.splitlines() + [""]:
        key, _, value = line.partition(" ")
        if key in ("URL", "Parent", "Warning", "Result", "Real"):
            block.setdefault(key, value.strip())
        elif not line.strip() and block:
            if block.get("Warning") or block.get("Result", "").startswith("Error"):
                problems.append(f"{block.get('URL', '?')} (dans {block.get('Parent', '?').removeprefix('URL').strip()}) : "
                                f"{block.get('Warning') or block.get('Result')}")
            block = {}
    if run.returncode not in (0, 1) or "That's it." not in run.stdout:
        problems.append(f"LinkChecker a échoué (code {run.returncode}) : {run.stderr.strip()[-500:]}")
    return problems


def external_links(site: Path, pages: list[Path] | None = None) -> dict[str, list[str]]:
    """Liens externes du site : ``{url: [pages qui le contiennent]}``."""
    site = Path(site)
    links: dict[str, list[str]] = {}
    for page in pages if pages is not None else html_pages(site):
        for a in soup(page).find_all("a", href=True):
            href = a["href"].strip()
            if _REMOTE.match(href):
                links.setdefault(href, [])
                rel = str(Path(page).relative_to(site))
                if rel not in links[href]:
                    links[href].append(rel)
    return dict(sorted(links.items()))


_HOST = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def external_link_problem(url: str) -> str | None:
    """Défaut de forme d'un lien externe (sans réseau) ; ``None`` s'il est bien formé."""
    if any(c.isspace() for c in url) or any(c in url for c in '"<>\\^`{|}'):
        return "caractère interdit dans une URL (espace, guillemet, chevron…)"
    parts = urlsplit(url)
    if parts.scheme != "https":
        return f"schéma « {parts.scheme or 'absent'} » : les liens externes du livre sont en https"
    host = (parts.hostname or "").lower()
    if host in {"localhost", "127.0.0.1", "0.0.0.0", "::1"} or host.endswith(".local"):
        return "lien vers une machine locale"
    if not _HOST.match(host):
        return f"nom d'hôte invalide : {host!r}"
    if re.search(r"%(?![0-9A-Fa-f]{2})", url):
        return "séquence % mal encodée"
    return None


# --- cellule d'installation (Colab) ----------------------------------------------------

def contributing_install_cell(root: Path = config.REPO_ROOT) -> tuple[str, list[str]]:
    """La cellule d'installation du squelette de ``CONTRIBUTING.md`` : ``(code, tags)``."""
    text = (Path(root) / "CONTRIBUTING.md").read_text(encoding="utf-8")
    m = re.search(r"```\{code-cell\}[^\n]*\n(?P<body>.*?)\n```", text, re.DOTALL)
    if not m:
        raise ValueError("CONTRIBUTING.md ne contient pas de cellule ```{code-cell} (squelette d'un chapitre).")
    lines = m["body"].split("\n")
    tags: list[str] = []
    while lines and re.match(r"^:[\w-]+:", lines[0]):
        opt = re.match(r"^:tags:\s*\[(.*)\]", lines.pop(0))
        if opt:
            tags = sorted(t.strip().strip("'\"") for t in opt[1].split(",") if t.strip())
    return "\n".join(lines).strip(), tags


def first_code_cell(notebook: Path) -> tuple[str, list[str]]:
    """Première cellule de code d'un notebook : ``(code, tags)``."""
    import nbformat

    if not Path(notebook).is_file():
        raise ValueError(f"{notebook} est absent : régénérez les notebooks (`make notebooks`).")
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            return cell.source.strip(), sorted(cell.get("metadata", {}).get("tags", []))
    raise ValueError(f"{notebook} ne contient aucune cellule de code.")


# --- serveur local ------------------------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # pas de journal sur la sortie des tests
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """Sert ``directory`` sur 127.0.0.1, port libre ; renvoie l'URL de base (``http://127.0.0.1:PORT/``)."""
    directory = Path(directory)
    if not (directory / "index.html").is_file():
        raise ValueError(f"{directory} ne contient pas de site construit (index.html absent) : lancez `make book`.")
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


# --- outil : aligner la première cellule des chapitres sur CONTRIBUTING.md -----------------

_FIRST_CELL = re.compile(r"(?P<open>^```\{code-cell\}[^\n]*\n)(?P<body>.*?)(?P<close>^```[ \t]*$)", re.DOTALL | re.MULTILINE)


def sync_install_cell(md: Path, root: Path = config.REPO_ROOT) -> bool:
    """Remplace la première cellule de code d'un chapitre MyST par la cellule d'installation
    de ``CONTRIBUTING.md`` (ou l'insère avant la première cellule si celle-ci n'en est pas une).
    Renvoie ``True`` si le fichier a changé ; régénérez ensuite les notebooks (``make notebooks``)."""
    code, tags = contributing_install_cell(root)
    cell = "```{code-cell} ipython3\n" + (f":tags: [{', '.join(tags)}]\n" if tags else "") + code + "\n```"
    text = Path(md).read_text(encoding="utf-8")
    m = _FIRST_CELL.search(text)
    if not m:
        raise ValueError(f"{md} : aucune cellule ```{{code-cell}} (ce n'est pas un chapitre exécutable).")
    if "importlib.util.find_spec(\"atelier\")" in m["body"]:
        new = text[: m.start()] + cell + text[m.end():]
    else:
        new = text[: m.start()] + cell + "\n\n" + text[m.start():]
    if new != text:
        Path(md).write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = Parser(
        prog="python -m tools.site",
        description="Aligne la première cellule des chapitres sur la cellule d'installation de CONTRIBUTING.md.",
    )
    parser.add_argument("command", choices=["sync-install-cell"])
    parser.add_argument("files", nargs="*", type=Path, metavar="CHAPITRE.md")
    args = parser.parse_args(argv)
    from tools import build

    files = args.files or build.chapter_sources()
    try:
        for md in files:
            print(("modifié : " if sync_install_cell(md) else "inchangé : ") + str(md))
    except ValueError as err:
        print(f"erreur : {err}", file=sys.stderr)
        return 2
    print("Régénérez les notebooks : make notebooks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
