# provision: `make demo` runs the bundled example, `make test` runs every test.
# Both install what they need on a fresh Debian machine (run as root).

SHELL := /bin/bash
VENV := .venv
# Debian's own interpreter, not the first python3 on PATH: Debian builds it with profile-guided
# and link-time optimisation, and a pyenv or source build (without --enable-optimizations) ran
# every provision command 20-30 % slower here (no-op plan 0.39 s against 0.30 s, median of 15).
PYTHON := /usr/bin/python3
PY := $(VENV)/bin/python
PROVISION := $(VENV)/bin/provision
# named for the interpreter: a .venv made by another one is made again
STAMP := $(VENV)/.installed-$(subst /,-,$(PYTHON))
DEMO_NS := provision-demo-gw1 provision-demo-gw2
DEBIAN_PACKAGES := iproute2 iputils-ping procps iperf3 socat
DEBIAN_PACKAGES += gcc libssl-dev python3-dev  # pip install builds provisioner/tunnel/_fastpath.c against libcrypto
TEST_PACKAGES := git openssh-client systemd strace  # the pull agent's git, ssh-keygen and ssh for Ansible, systemd-analyze; strace for the chaos suite
TEST_PACKAGES += wireguard-go wireguard-tools  # a stock WireGuard peer for the interop tests (wg configures it)
FUZZ_SECONDS := 60  # per target, for `make fuzz`

TUNNEL_HOSTS := gw1 gw2 site-a site-b hub spoke-east spoke-west  # the bundled inventories' hosts with tunnels

.PHONY: demo test test-fallback unit lint lock fuzz bytecode validators bench bench-check bench-tunnel bench-baseline bench-fleet bench-hub docker setup system packages clean demo-clean keys chaos soak

# Installs come from the lock files (exact versions, every file's hash), never from the ranges in
# pyproject.toml, so a fresh machine gets what the benchmarks were measured with. `make lock`
# refreshes them after a change to pyproject.toml; `make lock UPGRADE=1` moves every pin to the newest.
LOCK := requirements.lock
TEST_LOCK := requirements-test.lock
PIP_TOOLS := pip-tools==7.6.2
COMPILE := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links

$(STAMP): pyproject.toml setup.py provisioner/tunnel/_fastpath.c provisioner/kernel/_rtattr.c provisioner/kernel/_setns.c provisioner/kernel/_tuntap.c provisioner/kernel/_readahead.c $(LOCK) $(TEST_LOCK)
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3 python3-venv; }
	$(PYTHON) -m venv --clear $(VENV)
	$(VENV)/bin/pip install -q --require-hashes -r $(TEST_LOCK)
	@# compat: the checkout on sys.path by a .pth line; the default editable finder cost every run
	@# of provision 30-40 ms before its first line (pathlib, importlib.util and a finder at startup)
	$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	@# an older install (hatchling's) leaves site-packages/provisioner/ empty, which would shadow this one
	@rmdir $(VENV)/lib/python3*/site-packages/provisioner 2>/dev/null || true
	touch $@

lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q $(PIP_TOOLS)
	.venv-lock/bin/pip-compile $(COMPILE) $(if $(UPGRADE),--upgrade) -o $(LOCK) pyproject.toml
	.venv-lock/bin/pip-compile $(COMPILE) $(if $(UPGRADE),--upgrade) --extra test \
		--build-deps-for wheel --build-deps-for editable -c $(LOCK) -o $(TEST_LOCK) pyproject.toml

setup: system $(STAMP) keys bytecode

# Every run of provision imports its modules; where PYTHONDONTWRITEBYTECODE is set (CI images
# often set it) Python compiles them again each time unless the .pyc files are there: 0.1-0.6 s.
# The methods @dataclass writes at import, and the programs of the regular expressions a run
# compiles, are made here too, once (provisioner/precompiled.py): 30 ms and 2-3 ms of every run.
bytecode: $(STAMP)
	@$(PY) -m compileall -q provisioner
	@$(PY) -m provisioner.precompiled >/dev/null

# The inventory schema as Python code (provisioner/compiled_schemas/, in git): after a change to
# schemas/inventory.schema.json. tests/unit/test_validation.py fails while it is not redone.
validators: $(STAMP)
	$(PY) -m provisioner.schema

# Private keys are secrets: never in git. Each bundled host's key pair is made here once:
# keys/HOST.key (0600) and its public key keys/HOST.pub, which the inventories read through
# tunnel_public_key_file. A pair with a half missing is made anew.
keys: $(STAMP)
	@for h in $(TUNNEL_HOSTS); do k=inventories/keys/$$h.key; p=inventories/keys/$$h.pub; \
	  [ -f $$k ] && [ -f $$p ] || $(PROVISION) keygen --force $$k --public-file $$p >/dev/null || exit 1; done

system:
	@$(MAKE) -s packages PACKAGES="$(DEBIAN_PACKAGES)"

packages:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq $$missing; fi

demo: setup demo-clean
	@for ns in $(DEMO_NS); do ip netns add $$ns; done
	@ip link add demo-u1 netns provision-demo-gw1 type veth peer name demo-u2 netns provision-demo-gw2
	@ip -n provision-demo-gw1 addr add 192.0.2.129/25 dev demo-u1; ip -n provision-demo-gw1 link set demo-u1 up
	@ip -n provision-demo-gw2 addr add 192.0.2.130/25 dev demo-u2; ip -n provision-demo-gw2 link set demo-u2 up
	@trap '$(MAKE) -s demo-clean' EXIT; set -e; \
	echo "== provision validate inventories/demo.yaml"; $(PROVISION) validate inventories/demo.yaml; \
	echo; echo "== provision plan inventories/demo.yaml"; $(PROVISION) plan inventories/demo.yaml; \
	echo; echo "== provision apply inventories/demo.yaml"; $(PROVISION) apply inventories/demo.yaml; \
	echo; echo "== ip -n provision-demo-gw1 -br addr; ip -n provision-demo-gw1 route"; \
	ip -n provision-demo-gw1 -br addr; ip -n provision-demo-gw1 route; \
	echo; echo "== ping across the tunnel: gw1 198.51.100.1 -> gw2 198.51.100.11"; \
	for i in 1 2 3 4 5 6 7 8 9 10; do ip netns exec provision-demo-gw1 ping -c 1 -W 1 198.51.100.11 >/dev/null && break; sleep 0.3; done; \
	ip netns exec provision-demo-gw1 ping -c 3 -i 0.2 198.51.100.11 | tail -2; \
	sleep 1.1; \
	echo; echo "== provision status inventories/demo.yaml   (a second later: counters are reported each second)"; \
	$(PROVISION) status inventories/demo.yaml; \
	echo; echo "== provision plan inventories/demo.yaml --detailed-exitcode   (second plan: empty)"; \
	$(PROVISION) plan inventories/demo.yaml --detailed-exitcode; echo "exit code $$?"; \
	echo; echo "== provision destroy inventories/demo.yaml"; $(PROVISION) destroy inventories/demo.yaml

demo-clean:
	@for ns in $(DEMO_NS); do ip netns pids $$ns 2>/dev/null | xargs -r kill -9; ip netns del $$ns 2>/dev/null || true; done

# The Docker engine (installed and started if missing) and the test image, built locally.
docker: setup
	$(PY) tests/docker/provide.py

test: setup lint docker
	@$(MAKE) -s packages PACKAGES="$(TEST_PACKAGES)"
	$(PY) -m pytest -q tests
	@$(MAKE) -s test-fallback

# The tunnel suite once more on the Python datapath (provisioner/tunnel/fastpath.py), as a host
# without the compiled extension runs it.
FALLBACK_TESTS := tests/unit/test_peer.py tests/unit/test_device.py tests/unit/test_tcp_carrier.py tests/unit/test_udp_receive_run.py \
	tests/integration/test_secure_tunnels.py tests/integration/test_wireguard_interop.py \
	tests/integration/test_hostile_peers.py tests/integration/test_tunnels.py tests/integration/test_hub.py \
	tests/integration/test_default_flags.py
test-fallback: setup
	PROVISION_DATAPATH=python $(PY) -m pytest -q $(FALLBACK_TESTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check --select F,E9,B,UP --line-length 120 provisioner tests bench
	$(VENV)/bin/mypy --ignore-missing-imports provisioner

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

# Coverage-guided fuzzing (atheris) of every decoder the network reaches, FUZZ_SECONDS each;
# then the targets that reach the C extension again, FUZZ_SECONDS each, against a build of it
# with AddressSanitizer and UBSan (tests/fuzz/run.py, docs/fastpath.md). A crash is kept in
# tests/fuzz/crashes/TARGET/ and replayed by `make test` from then on.
fuzz: $(STAMP)
	$(PY) -m tests.fuzz.run --seconds $(FUZZ_SECONDS) --asan

# The chaos suite in full (docs/chaos.md); `make test` runs its short form. Prints the table.
CHAOS_RESULTS := $(CURDIR)/.chaos-results.jsonl
chaos: setup
	@$(MAKE) -s packages PACKAGES="$(TEST_PACKAGES) iperf3"
	@rm -f $(CHAOS_RESULTS)
	PROVISION_CHAOS=full PROVISION_CHAOS_RESULTS=$(CHAOS_RESULTS) $(PY) -m pytest -q tests/chaos
	@$(PY) -m tests.chaos.report $(CHAOS_RESULTS)

# 30 minutes of iperf3 and ping through 4 tunnels; forwarder RSS, descriptors and CPU every 10 s
# (not in `make test`). PROVISION_SOAK_SECONDS shortens it; the samples go to soak.csv.
soak: setup
	@$(MAKE) -s packages PACKAGES="$(TEST_PACKAGES) iperf3"
	PROVISION_SOAK_CSV=$(CURDIR)/soak.csv $(PY) -m pytest -q -s tests/chaos/soak.py

bench: setup
	$(PY) bench/reconcile.py

# The regression guard CI runs after the tests: the reconcile benchmark at 1000 devices, median of
# 7 rounds, ratios only; fails when a ratio passes its limit (bench/reconcile.py GUARD) by more than
# BENCH_MARGIN. Half a minute.
BENCH_MARGIN ?= 0.5
bench-check: setup
	BENCH_DEVICES=1000 BENCH_REPEAT=7 $(PY) bench/reconcile.py --check $(BENCH_MARGIN)

# bench-tunnel measures the code before the WireGuard rewrite beside this one, in the same run:
# BENCH_BASELINE names a checkout of it with its own .venv (its own `make setup`); unset, it is
# a detached worktree of BASELINE_REF (main before issue 11) at .cache/baseline, made and set up here.
# Debian's wireguard-go is a measured peer.
BASELINE_REF ?= a9998500552fda365d8f46ecbe592545a98e3cf4
BENCH_PACKAGES := wireguard-go wireguard-tools

bench-tunnel: setup $(if $(BENCH_BASELINE),,bench-baseline)
	@$(MAKE) -s packages PACKAGES="$(BENCH_PACKAGES)"
	BENCH_BASELINE=$(abspath $(or $(BENCH_BASELINE),.cache/baseline)) $(PY) bench/tunnel.py

bench-baseline:
	@[ -d .cache/baseline ] || git worktree add --detach .cache/baseline $(BASELINE_REF)
	@git -C .cache/baseline checkout -q --detach $(BASELINE_REF)
	@$(MAKE) -s -C .cache/baseline setup

bench-fleet: setup
	$(PY) bench/fleet.py

# bench-hub: a hub of 50 and of 500 encrypted UDP tunnels (wireguard-go spokes), what it costs
# on the hub, beside one wireguard-go with as many peers; BENCH_HUB_SIZES=50 for a short run.
bench-hub: setup
	@$(MAKE) -s packages PACKAGES="$(BENCH_PACKAGES)"
	$(PY) bench/hub.py

clean: demo-clean
	rm -rf $(VENV) .venv-lock .pytest_cache
