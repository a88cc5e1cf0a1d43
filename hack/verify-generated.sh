#!/usr/bin/env bash
# Fails when `make manifests generate` changes any generated file: the CRDs,
# RBAC and deepcopy code must be committed as the Go types produce them.
set -euo pipefail
cd "$(dirname "$0")/.."
before="$(mktemp -d)"
trap 'rm -rf "$before"' EXIT
cp -r config api "$before/"
make -s manifests generate >/dev/null
if ! diff -r "$before/config" config >/dev/null || ! diff -r "$before/api" api >/dev/null; then
  diff -ru "$before/config" config || true
  diff -ru "$before/api" api || true
  echo "generated files were stale and have been regenerated: review and commit them" >&2
  exit 1
fi
echo "generated files are up to date"
