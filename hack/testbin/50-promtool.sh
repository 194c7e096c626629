# shellcheck shell=bash
# Sourced by hack/testbin.sh (which defines build, have, prepare).
# promtool validates and unit-tests the alert rules in charts/rotor/files/alerts.yaml.
# Prometheus tags its Go module v0.3MM.P for Prometheus 3.MM.P: v0.316.0 is Prometheus 3.16.0.
PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
BINARIES+=("promtool $PROMTOOL_VERSION")

if ! have promtool "$PROMTOOL_VERSION"; then
  prepare promtool "$PROMTOOL_VERSION"
  upstream=$(cd "$src" && go mod download -json "github.com/prometheus/prometheus@$PROMTOOL_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module rotor.dev/testbin/promtool"
    grep -E '^go ' "$upstream"
    echo "require github.com/prometheus/prometheus $PROMTOOL_VERSION"
  } > "$src/go.mod"
  printf '//go:build tools\n\npackage tools\nimport _ "github.com/prometheus/prometheus/cmd/promtool"\n' > "$src/tools.go"
  minor=${PROMTOOL_VERSION#v0.}; minor=${minor%%.*}; patch=${PROMTOOL_VERSION##*.}
  build promtool "$PROMTOOL_VERSION" github.com/prometheus/prometheus/cmd/promtool \
    "-X github.com/prometheus/common/version.Version=3.${minor#3}.$patch"
fi
