#!/usr/bin/env bash
# Fails when `make manifests generate` or hack/gen-chart.sh changes any
# generated file: the CRDs, RBAC, deepcopy code and the Helm chart must be
# committed as the Go types and config/ produce them.
set -euo pipefail
cd "$(dirname "$0")/.."
before="$(mktemp -d)"
trap 'rm -rf "$before"' EXIT
cp -r config api charts "$before/"
make -s manifests generate >/dev/null
hack/gen-chart.sh >/dev/null
if ! diff -r "$before/config" config >/dev/null || ! diff -r "$before/api" api >/dev/null || ! diff -r "$before/charts" charts >/dev/null; then
  diff -ru "$before/config" config || true
  diff -ru "$before/api" api || true
  diff -ru "$before/charts" charts || true
  echo "generated files were stale and have been regenerated: review and commit them" >&2
  exit 1
fi
echo "generated files are up to date"
