#!/usr/bin/env bash
# Copies the one source of the ServedModel CRD (crds/servedmodel.io_servedmodels.yaml) into the Helm chart's
# crds/ folder, byte for byte. tests/e2e/test_chart.py fails when the two differ.
#   tools/helm/sync-crd.sh           copy
#   tools/helm/sync-crd.sh --check   exit 1 (and say so) when the copy is stale
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
src="$top/crds/servedmodel.io_servedmodels.yaml"
dst="$top/charts/servedmodel-operator/crds/servedmodel.io_servedmodels.yaml"
if [ "${1:-}" = "--check" ]; then
  cmp -s "$src" "$dst" || { echo "sync-crd: $dst differs from $src; run tools/helm/sync-crd.sh" >&2; exit 1; }
  exit 0
fi
mkdir -p "$(dirname "$dst")"
cp "$src" "$dst"
echo "sync-crd: copied ${src#"$top"/} -> ${dst#"$top"/}" >&2
