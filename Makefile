# Ferrum's verbs. `make run` starts a local cluster, `make test` is what CI runs.
CARGO ?= cargo
DATA ?= $(CURDIR)/.data
NAMESRV_PORT ?= 9876

.PHONY: all build run test lint fmt fmt-check clippy compat e2e bench fuzz-smoke crds k8s-test ci clean images chart-test

# Tests and drills are not about how full the machine's disk is: every broker they
# start, directly or from a script, refuses writes only at 98 % used instead of RocketMQ's 90 %,
# and deletes no CommitLog file because the disk is full (RocketMQ forces that from 85 %). A value
# already in the environment wins; the tests of those rules set their own. Containers and pods do
# not inherit it (see docs/disk-space.md). `make bench` keeps RocketMQ's thresholds, as its
# Apache peer does (Apache clamps them at 90/85).
DISK_INDEPENDENT := test compat e2e e2e-cluster fuzz-smoke k8s-test k8s-node-test chart-test \
  observability-test vectors
$(DISK_INDEPENDENT): export FERRUM_BROKER_DISK_SPACE_WARNING_LEVEL_RATIO ?= 98
$(DISK_INDEPENDENT): export FERRUM_BROKER_DISK_SPACE_CLEAN_FORCIBLY_RATIO ?= 97
$(DISK_INDEPENDENT): export FERRUM_BROKER_CLEAN_FILE_FORCIBLY_ENABLE ?= false

all: build

build:
	$(CARGO) build --workspace --release

## run: a local NameServer + broker with data under .data/ (Ctrl-C stops both)
run:
	DATA=$(DATA) NAMESRV_PORT=$(NAMESRV_PORT) bash hack/run-local.sh

## test: every unit, property and process-level test over real TCP
test:
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

## lint: formatting and clippy, warnings are errors
lint: fmt-check clippy

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## compat: real RocketMQ clients (Apache Java tools/client, Go, Rust) against Ferrum
compat:
	bash hack/compat/run.sh

## vectors: regenerate protocol/tests/vectors/ from frames of real clients recorded by a proxy (not in CI)
.PHONY: vectors
vectors:
	bash hack/compat/capture.sh

## fuzz-smoke: a short cargo-fuzz run of every target (FUZZ_SECONDS each)
fuzz-smoke:
	bash hack/fuzz-smoke.sh

## bench: side-by-side performance against the peers (never part of `make test`)
bench:
	bash hack/bench/run.sh

e2e:
	bash hack/e2e/run.sh

## e2e-cluster: the real-node part of e2e (root; CI runs it): images, helm install, MasterSlave and
## Raft groups, 10,000 messages, failover, garbage collection, rolling upgrades
.PHONY: e2e-cluster
e2e-cluster:
	bash hack/e2e/run.sh cluster

## crds: regenerate the checked-in CustomResourceDefinitions from the operator's types
## (crds/ and the Helm chart's copy, which must stay the same bytes)
crds:
	$(CARGO) run -q -p ferrum-operator -- crd > crds/ferrum.dev.yaml
	cp crds/ferrum.dev.yaml charts/ferrum/crds/ferrum.dev.yaml

## images: every Dockerfile target built with podman from locally made bases, saved for containerd
images:
	bash hack/images/build.sh

## chart-test: helm lint + template of charts/ferrum, server-side dry-run against a real apiserver
chart-test:
	bash hack/chart/test.sh

## observability-test: metrics, dashboards and alert rules checked by a real Prometheus (installs Debian's prometheus)
.PHONY: observability-test
observability-test:
	bash hack/observability/test.sh

## k8s-test: the operator's tests against a real etcd + kube-apiserver + controller-manager
k8s-test:
	bash hack/k8s/test.sh

## k8s-node-test: a real single-node cluster (containerd, kubelet, kube-proxy, CoreDNS) and its smoke test; root
.PHONY: k8s-node-test
k8s-node-test:
	bash hack/k8s/node-test.sh

clean:
	$(CARGO) clean
	rm -rf $(DATA)
