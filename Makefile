# Short forms of `python -m pipeline ...`; the CLI and this file call the same functions.
PYTHON ?= python3
TARGET ?= openvino
MODEL ?= lite0
STAGE ?= report

ARGS = --target $(TARGET) --model $(MODEL) \
	$(if $(DATA),--data $(DATA)) $(if $(CALIB),--calib $(CALIB)) $(if $(CALIB_SIZE),--calib-size $(CALIB_SIZE)) \
	$(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(MAX_DROP),--max-drop $(MAX_DROP)) \
	$(if $(IMAGE_SIZE),--image-size $(IMAGE_SIZE)) $(if $(OUT),--out $(OUT)) \
	$(foreach s,$(SET),--set $(s)) $(if $(DEBUG),--debug)

.PHONY: setup deploy stage test test-e2e models targets clean

.setup.stamp: pyproject.toml
	$(PYTHON) -m pip install -e '.[all,dev]'
	touch $@

setup: .setup.stamp

deploy: setup
	$(PYTHON) -m pipeline deploy $(ARGS)

stage: setup  ## one stage (and what it needs): make stage STAGE=int8 MODEL=b0
	$(PYTHON) -m pipeline $(STAGE) $(ARGS)

test: setup
	$(PYTHON) -m pytest

test-e2e: setup
	$(PYTHON) -m pytest -m e2e

models targets: setup
	$(PYTHON) -m pipeline $@

clean:
	rm -rf runs .setup.stamp
