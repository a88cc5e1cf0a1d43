# Keyward — see README.md. `make help` lists the targets.

IMG ?= ghcr.io/keyward/keyward:latest
GO ?= go
CONTROLLER_GEN ?= $(GO) tool controller-gen
# Unit + envtest suites; the envtest assets are built once from the Go module
# proxy (hack/envtest-assets.sh) and cached.
TEST_FLAGS ?= -timeout 30m
ENVTEST_ASSETS = $$(hack/envtest-assets.sh)

.DEFAULT_GOAL := help
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Development

.PHONY: dev
dev: envtest ## Run Keyward on a local control plane (kube-apiserver + etcd), in the foreground; DEV_FLAGS are the manager's flags.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" $(GO) run ./hack/dev $(DEV_FLAGS)

.PHONY: manifests
manifests: ## Generate the CRDs and RBAC from the Go types and markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac \
		output:webhook:artifacts:config=config/webhook

.PHONY: generate
generate: ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## gofmt the tree.
	$(GO) fmt ./...

.PHONY: vet
vet: ## go vet the tree.
	$(GO) vet ./...

.PHONY: lint
lint: vet ## Check formatting and vet.
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [[ -n "$$out" ]]; then echo "not gofmt'ed:"; echo "$$out"; exit 1; fi

.PHONY: verify
verify: ## Fail if `make manifests generate` would change the tree.
	hack/verify-generated.sh

.PHONY: envtest
envtest: ## Build (once) and cache kube-apiserver, etcd and kubectl from the Go module proxy.
	@hack/envtest-assets.sh >/dev/null

.PHONY: test
test: vet envtest ## Vet, unit tests and envtest suites against a real API server.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" $(GO) test $(TEST_FLAGS) ./...

# Not part of `make test`: building Traefik from the Go module proxy takes
# about 10 minutes cold on 2 cores (hack/traefik.sh caches it; TRAEFIK_BIN skips it).
.PHONY: test-gateways
test-gateways: ## Real Traefik, nginx and Caddy in front of the key server, with docs/gateways.md's configs; builds Traefik once (~10 min).
	bin="$$(hack/traefik.sh)"; TRAEFIK_BIN="$$bin" $(GO) test $(TEST_FLAGS) -count=1 ./test/traefik ./test/nginx ./test/caddy

# Not part of `make test`: it runs a single-node cluster on this host (root;
# changes iptables, adds a bridge and cgroups, all removed at the end).
.PHONY: test-e2e
test-e2e: ## Keyward installed on a real single-node cluster on this host (root; Debian containerd, runc, CNI plugins, iptables, conntrack); see docs/e2e.md.
	hack/e2e/run.sh

.PHONY: bench
bench: envtest ## Measure the key server, index, reconciles, revocation, tokens, KeyPolicy selection, gRPC ext_authz and the hot path; writes docs/benchmarks.md.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" $(GO) run ./hack/bench -out docs/benchmarks.md

.PHONY: soak
soak: envtest ## 30 minutes rotating 10% of keys per minute under validation load; counts false rejections (not in CI).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" $(GO) run ./hack/soak $(SOAK_FLAGS)

##@ Build

.PHONY: build
build: ## Build the manager and the kubectl plugin into bin/.
	$(GO) build -trimpath -o bin/keyward .
	$(GO) build -trimpath -o bin/kubectl-keyward ./cmd/kubectl-keyward

.PHONY: run
run: ## Run the manager against the cluster of the current kubeconfig.
	$(GO) run . --leader-elect=false

.PHONY: docker-build
docker-build: ## Build the container image.
	docker build -t $(IMG) .

##@ Deployment (uses kubectl from PATH, or the envtest assets' kubectl)

KUBECTL ?= $$(command -v kubectl || echo "$(ENVTEST_ASSETS)/kubectl")

.PHONY: install
install: manifests ## Install the CRDs into the current cluster.
	$(KUBECTL) apply --server-side -k config/crd

.PHONY: uninstall
uninstall: ## Remove the CRDs (and with them every key) from the current cluster.
	$(KUBECTL) delete -k config/crd --ignore-not-found

.PHONY: deploy
deploy: manifests ## Deploy Keyward to the current cluster.
	$(KUBECTL) kustomize config/default | sed 's#ghcr.io/keyward/keyward:latest#$(IMG)#' | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: ## Remove Keyward from the current cluster.
	$(KUBECTL) kustomize config/default | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: chart
chart: manifests ## Regenerate the Helm chart (charts/keyward) from config/default.
	hack/gen-chart.sh

.PHONY: build-installer
build-installer: manifests ## Write dist/install.yaml, one file to install Keyward.
	mkdir -p dist
	$(KUBECTL) kustomize config/default | sed 's#ghcr.io/keyward/keyward:latest#$(IMG)#' > dist/install.yaml

.PHONY: build-installer-cert-manager
build-installer-cert-manager: manifests ## Write dist/install-cert-manager.yaml: certificates from an installed cert-manager.
	mkdir -p dist
	$(KUBECTL) kustomize config/overlays/cert-manager | sed 's#ghcr.io/keyward/keyward:latest#$(IMG)#' > dist/install-cert-manager.yaml

.PHONY: build-installer-redis
build-installer-redis: manifests ## Write dist/install-redis.yaml: rate limits exact across key server replicas, through a Redis it adds.
	mkdir -p dist
	$(KUBECTL) kustomize config/overlays/redis | sed 's#ghcr.io/keyward/keyward:latest#$(IMG)#' > dist/install-redis.yaml

.PHONY: build-installer-monitoring
build-installer-monitoring: manifests ## Write dist/install-monitoring.yaml: config/default plus ServiceMonitors, PrometheusRule and Grafana dashboard.
	mkdir -p dist
	$(KUBECTL) kustomize config/overlays/monitoring | sed 's#ghcr.io/keyward/keyward:latest#$(IMG)#' > dist/install-monitoring.yaml
