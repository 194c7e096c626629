# shellcheck shell=bash
# Sourced by hack/testbin.sh (which defines build, have, prepare).
# OpenBao is the preferred server, but the Go module proxy answers 403 "This module version is not
# available" for github.com/openbao/openbao, so Rotor builds HashiCorp Vault (same API) instead.
# v1.21.0: the first release of its branch, so the published sdk/api its go.mod names match its tree.
# (v1.21.4 names sdk v0.21.0, which is ahead of the release branch's own sdk and does not compile
# with it; no published sdk version matches that tree.)
VAULT_VERSION="${VAULT_VERSION:-v1.21.0}"
BINARIES+=("vault $VAULT_VERSION")

# vault: its go.mod replaces api/ and sdk/ with nested modules the module zip leaves out, so use
# their published versions and keep only the upstream replaces that point at other modules.
if ! have vault "$VAULT_VERSION"; then
  prepare vault "$VAULT_VERSION"
  upstream=$(cd "$src" && go mod download -json "github.com/hashicorp/vault@$VAULT_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module rotor.dev/testbin/vault"
    grep -E '^go ' "$upstream"
    echo "require github.com/hashicorp/vault $VAULT_VERSION"
    grep -E '^replace ' "$upstream" | grep -v '=> \./' || true
  } > "$src/go.mod"
  printf '//go:build tools\n\npackage tools\nimport _ "github.com/hashicorp/vault"\n' > "$src/tools.go"
  build vault "$VAULT_VERSION" github.com/hashicorp/vault \
    "-X github.com/hashicorp/vault/version.Version=${VAULT_VERSION#v}"
fi
