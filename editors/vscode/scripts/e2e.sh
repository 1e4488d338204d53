#!/usr/bin/env bash
# Every test level of the VS Code extension, as CI runs it (root; offline but for the package
# registries):
#   1. tools      Debian packages + code-server and playwright-core, cached outside the repo
#                 ($TETHER_E2E_CACHE, default ~/.cache/tether-vscode-e2e)
#   2. npm ci     the extension's own dependencies (skipped when package-lock.json is unchanged)
#   3. unit       typecheck + node's test runner over the modules that need no VS Code
#   4. package    dist/tether.vsix (and the test-only Go debugger's .vsix)
#   5. tether     cargo build of the daemon, agent, layer and the local pod example
#                 (skipped when TETHER_BIN_DIR and POD_BIN are given)
#   6. e2e        test/e2e/run.mjs: code-server in headless Chromium against a local pod
# E2E=0 stops after step 4. Each step's time is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
EXT=$PWD
REPO=$(cd ../.. && pwd)
# The Go debugger's `dlv` is where `go install` puts it (bash .ci/tools install).
PATH=$PATH:${GOBIN:-$(go env GOPATH)/bin}
export PATH
export E2E_CACHE=${TETHER_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tether-vscode-e2e}
mkdir -p "$E2E_CACHE"

times=()
run_step() {
  local name=$1
  shift
  echo "== $name"
  local start=$(date +%s%N)
  "$@"
  local ms=$((($(date +%s%N) - start) / 1000000))
  times+=("$(printf '%6d.%01ds  %s' $((ms / 1000)) $((ms % 1000 / 100)) "$name")")
}
print_times() {
  echo "== timings"
  printf '%s\n' "${times[@]}"
}
trap print_times EXIT

install_tools() {
  E2E_TOOLS=$(bash "$EXT/scripts/install-e2e-tools.sh" | tail -1)
  export E2E_TOOLS
}

npm_ci() {
  local sum
  sum=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ -f node_modules/.lock-sha256 ] && [ "$(cat node_modules/.lock-sha256)" = "$sum" ]; then
    echo "node_modules is current"
    return
  fi
  npm ci --no-audit --no-fund
  echo "$sum" >node_modules/.lock-sha256
}

unit() {
  npx tsc -p . --noEmit
  npm run --silent test:unit
}

package() {
  npm run --silent package
  (cd test/e2e/go-debugger &&
    "$EXT/node_modules/.bin/vsce" package --no-dependencies --allow-missing-repository --skip-license \
      --out "$EXT/dist/tether-e2e-go-debugger.vsix")
  ls -la dist/*.vsix
}

build_tether() {
  (cd "$REPO" && cargo build --workspace && cargo build -p tether-testkit --example pod)
  export TETHER_BIN_DIR=$REPO/target/debug POD_BIN=$REPO/target/debug/examples/pod
}

e2e() {
  if [ "$(id -u)" != 0 ]; then
    echo "the end-to-end test builds network namespaces and needs root" >&2
    return 1
  fi
  VSIX=$EXT/dist/tether.vsix GO_VSIX=$EXT/dist/tether-e2e-go-debugger.vsix node test/e2e/run.mjs
}

run_step "tools (apt + code-server + playwright-core, cached)" install_tools
run_step "npm ci" npm_ci
run_step "unit tests" unit
run_step "package (.vsix)" package
if [ "${E2E:-1}" = 0 ]; then
  exit 0
fi
if [ -z "${TETHER_BIN_DIR:-}" ] || [ -z "${POD_BIN:-}" ]; then
  run_step "cargo build (tether, agent, layer, pod example)" build_tether
fi
run_step "end-to-end (code-server + Chromium + local pod)" e2e
