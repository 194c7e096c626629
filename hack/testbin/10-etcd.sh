# shellcheck shell=bash
# Sourced by hack/testbin.sh (which defines build, have, prepare).
ETCD_VERSION="${ETCD_VERSION:-v3.6.8}"
BINARIES+=("etcd $ETCD_VERSION")

# etcd: the server module's main package.
if ! have etcd "$ETCD_VERSION"; then
  prepare etcd "$ETCD_VERSION"
  cat > "$src/go.mod" <<MOD
module rotor.dev/testbin/etcd
go 1.24
require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  printf 'package tools\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$src/tools.go"
  sed -i 's/^package tools/\/\/go:build tools\n\npackage tools/' "$src/tools.go"
  build etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3
fi
