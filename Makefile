# Two commands do everything on a fresh machine with Python >= 3.10 and make:
#   make demo   set up .venv, then train Newton and SGD on the embedded digits data
#   make test   set up .venv, then the linter and the whole test suite (notebooks included)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NP     ?= 4
# One BLAS thread per MPI rank: several ranks on few cores are many times slower otherwise.
export OMP_NUM_THREADS=1
export OPENBLAS_NUM_THREADS=1
export MKL_NUM_THREADS=1
export IPP_NONINTERACTIVE=1
# MPICH: a waiting rank sleeps 1 us after 4096 empty polls instead of spinning on a core that
# a working rank needs. Times only, never results (docs/installation.md: 3-10% with 4 ranks on 2 cores).
export MPIR_CVAR_CH4_PROGRESS_THROTTLE=1
# Runs on this machine listen on the loopback interface only: MPICH's one-machine launcher and
# each rank's network module on lo (dnewton_core/environment.py). Across machines, give your
# own launcher: make demo LAUNCH="$(BIN)/mpiexec -f hosts -n 8" (docs/command-line.md, Several machines).
LAUNCH ?= $(BIN)/python -m dnewton_core.environment -n $(NP)

.PHONY: demo test lab lab-reset browser-check bench venv bytecode clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed

# The kit's modules compiled once: where PYTHONDONTWRITEBYTECODE is set (as on the machines CI
# runs on) every process compiled them again, 0.15 s each: an empty 4-rank run took 2.3 s to
# start and end instead of 1.4 s, and the test suite starts hundreds of them.
bytecode: venv
	@$(BIN)/python -m compileall -q dnewton_core tests bench

demo: bytecode
	$(LAUNCH) $(BIN)/python -m dnewton_core compare --data digits --hidden 64,64 --iters 30 --out results/demo --overwrite

# Tests that time the machine itself (marked serial) run first, alone; then the others in
# JOBS processes, a test file to each (pytest-xdist): half of a one-process run is processes
# starting and waiting, and 2 of them on 2 cores took 10.5-11 minutes where one took 13.
# Both parts always run; make fails if either did (5: no test marked serial, not a failure).
JOBS ?= 2
test: bytecode
	$(BIN)/ruff check .
	status=0; \
	$(BIN)/python -m pytest -m serial || [ $$? -eq 5 ] || status=1; \
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile --no-loadscope-reorder -m "not serial" || status=1; \
	exit $$status

# The notebooks open as copies in lab/ (git-ignored): run and save them freely, git stays clean
# and notebooks/ keeps the executed outputs the tests compare against. A notebook is copied only
# where lab/ has none, so your work is kept; `make lab-reset` replaces lab/ with fresh copies.
# As root (a container), JupyterLab needs --allow-root, which is then given.
lab: bytecode
	@mkdir -p lab
	@cd notebooks && find . -name '*.ipynb' ! -path '*/.ipynb_checkpoints/*' | while read -r f; do \
	    test -e "../lab/$$f" || { mkdir -p "../lab/$$(dirname "$$f")" && cp "$$f" "../lab/$$f"; }; done
	$(BIN)/jupyter lab lab/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)

lab-reset:
	rm -rf lab
	$(MAKE) lab

# Only the browser check, on every notebook (`make test` runs those that show widgets) through
# JupyterLab's menus in headless Chromium (Playwright); DNEWTON_BROWSER=05,07 picks notebooks.
# Needs Chromium: apt-get install -y --no-install-recommends chromium
browser-check: bytecode
	DNEWTON_BROWSER=$${DNEWTON_BROWSER:-all} $(BIN)/python -m pytest tests/test_browser.py -v

bench: bytecode
	$(BIN)/python bench/ratios.py

clean:
	rm -rf $(VENV) .pytest_cache
	find dnewton_core tests bench -name __pycache__ -type d -prune -exec rm -rf {} +
