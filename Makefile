# Two commands on a fresh machine: `make demo` (restore the bundled examples) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of PyTorch; GPU users install their own build first (see README).
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	# spandrel without its torchvision requirement: PyPI's torchvision would replace this CPU torch with
	# a CUDA build, and restorecli imports spandrel without torchvision (restorecli/zoo/via_spandrel.py).
	$(BIN)/pip install -q --no-deps "spandrel>=0.4.2"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/restore derain examples/rainy examples/out/derain
	$(BIN)/restore deblur examples/blurry examples/out/deblur
	$(BIN)/restore denoise examples/noisy examples/out/denoise
	$(BIN)/restore upscale examples/small examples/out/upscale
	$(BIN)/restore eval examples/rainy --gt examples/clean
	$(BIN)/restore eval examples/out/derain --gt examples/clean
	$(BIN)/restore eval examples/blurry --gt examples/clean
	$(BIN)/restore eval examples/out/deblur --gt examples/clean
	$(BIN)/restore eval examples/noisy --gt examples/clean
	$(BIN)/restore eval examples/out/denoise --gt examples/clean
	$(BIN)/restore eval examples/out/upscale --gt examples/clean --protocol sr-x4

test: install
	$(BIN)/python -m pytest -n 2

clean:
	rm -rf $(VENV) examples/out .pytest_cache
