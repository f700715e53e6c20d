# ksboot — build, test, verify, bench. `make help` lists the targets.
GO       ?= go
BIN      ?= bin/ksboot
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.1.0-dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# Tests that boot VMs or build Kubernetes take minutes; they are skipped with -short.
TESTFLAGS ?= -race -timeout 40m
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(shell $(GO) env GOPATH)/bin/staticcheck)

.PHONY: help build example test test-short verify bench fuzz e2e clean k8s-binaries

help:
	@echo "make build      build $(BIN)"
	@echo "make example    build and run build-seed on the built-in example (./seeds)"
	@echo "make test       all tests, including real cloud-init, kubeadm and qemu guests"
	@echo "make test-short unit tests only"
	@echo "make verify     gofmt, go vet, staticcheck, go mod tidy"
	@echo "make bench      benchmarks with figures (build-seed vs cloud-localds, ...)"
	@echo "make e2e        the black-box VM scenarios (test/e2e/scenarios; E2E=name,name to choose)"

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/ksboot

example: build
	./$(BIN) build-seed -o seeds

# Real Kubernetes binaries for the tests, built once from their Go modules and cached under
# ~/.cache/ksboot (a few minutes the first time; tests that need them skip without them).
K8S_VERSION ?= v1.37.2
k8s-binaries:
	./hack/build-k8s.sh $(K8S_VERSION) kubeadm kube-apiserver etcd

test: k8s-binaries
	$(GO) test $(TESTFLAGS) ./...

test-short:
	$(GO) test -short -race ./...

verify:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^$$') 2>&1); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	$(GO) mod tidy -diff

# The black-box suite: three qemu guests per scenario form a real cluster (tens of minutes each
# under TCG). E2E selects scenarios by name (test/e2e/scenarios/*.yaml), comma-separated.
E2E ?= mdns-cluster,baseline,static-order-reset,foreign-ca
e2e: k8s-binaries
	KSBOOT_E2E=$(E2E) $(GO) test -v -count=1 -timeout 6h -run TestE2E ./test/e2e

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 60s ./cluster/

bench:
	bash -o pipefail -c "$(GO) test -run '^$$' -bench . -benchtime 3x -benchmem -timeout 30m ./... | awk -f hack/bench-summary.awk"

clean:
	rm -rf bin seeds
