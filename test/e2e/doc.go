// Package e2e runs Keyward as users install it, on the single-node cluster
// hack/e2e/cluster.sh brings up on this host: `make test-e2e` builds
// everything, starts the node, runs this suite and tears the node down. The
// suite needs the node (and root), so its files carry the e2e build tag and
// `make test` does not run it. docs/e2e.md says what it needs and proves.
package e2e
