#!/usr/bin/env bash
# Installs what the end-to-end test needs, from the package registries only, into a cache
# directory outside the repository (reused by later runs):
#   - Debian: chromium, ripgrep and what code-server's native modules build with;
#   - npm: code-server (a full VS Code for the browser) and playwright-core, into $CACHE/tools.
# code-server's own install steps download from GitHub, which cannot be reached here; see
# ../../../shared/notes/vscode-e2e.md for the two work-arounds used below.
#
# Prints the cache directory's tools path on its last line.
set -euo pipefail

CODE_SERVER_VERSION=4.96.4
PLAYWRIGHT_VERSION=1.65.1
CACHE=${TETHER_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tether-vscode-e2e}
TOOLS=$CACHE/tools
STAMP=$TOOLS/.installed-code-server-$CODE_SERVER_VERSION-playwright-$PLAYWRIGHT_VERSION

log() { echo "[install-e2e-tools] $*" >&2; }

# Debian packages.
export DEBIAN_FRONTEND=noninteractive
packages=(chromium ripgrep libkrb5-dev build-essential python3)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ -e "$STAMP" ]; then
  log "code-server $CODE_SERVER_VERSION already installed in $TOOLS"
  echo "$TOOLS"
  exit 0
fi

# npm's own download cache stays where the user has it, so registry tarballs are reused.
npm_config_cache=${npm_config_cache:-$(npm config get cache)}
export npm_config_cache
rm -rf "$TOOLS"
mkdir -p "$TOOLS" "$CACHE/install-home/tmp"
# code-server's install writes into HOME and the temporary directory: keep both in the cache.
export HOME=$CACHE/install-home XDG_CONFIG_HOME=$CACHE/install-home/.config \
  XDG_DATA_HOME=$CACHE/install-home/.local/share XDG_CACHE_HOME=$CACHE/install-home/.cache \
  TMPDIR=$CACHE/install-home/tmp
cd "$TOOLS"
echo '{"name": "tether-vscode-e2e-tools", "private": true}' >package.json

log "npm install code-server@$CODE_SERVER_VERSION playwright-core@$PLAYWRIGHT_VERSION (scripts off)"
npm install --no-audit --no-fund --ignore-scripts \
  "code-server@$CODE_SERVER_VERSION" "playwright-core@$PLAYWRIGHT_VERSION" >&2

log "npm rebuild argon2 (its prebuilt download cannot work; it compiles)"
# node-gyp would download Node's headers; use the installed ones.
if [ -z "${npm_config_nodedir:-}" ] && [ -e /usr/include/node/node_api.h ]; then
  export npm_config_nodedir=/usr
fi
npm rebuild argon2 >&2

# 1. The VS Code inside code-server pins @vscode/proxy-agent to a git+ssh URL; the registry
#    tarball of that version is byte-identical (same sha512).
shrinkwrap=node_modules/code-server/lib/vscode/npm-shrinkwrap.json
node - "$shrinkwrap" <<'EOF'
const fs = require('fs');
const file = process.argv[2];
const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
let changed = 0;
for (const [key, entry] of Object.entries(doc.packages ?? {})) {
  if (key.endsWith('node_modules/@vscode/proxy-agent') && /^git\+/.test(entry.resolved ?? '')) {
    entry.resolved = `https://registry.npmjs.org/@vscode/proxy-agent/-/proxy-agent-${entry.version}.tgz`;
    changed++;
  }
}
fs.writeFileSync(file, JSON.stringify(doc, null, 2) + '\n');
console.error(`[install-e2e-tools] shrinkwrap: ${changed} @vscode/proxy-agent entry rewritten to the registry tarball`);
EOF

# 2. @vscode/ripgrep downloads rg from GitHub, but first looks in its cache: fill it with
#    Debian's rg.
rgdir=$TMPDIR/vscode-ripgrep-cache-1.15.9
mkdir -p "$rgdir/pack"
cp "$(command -v rg)" "$rgdir/pack/rg"
tar -C "$rgdir/pack" -czf "$rgdir/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz" rg
rm -rf "$rgdir/pack"

log "code-server postinstall (installs VS Code's own modules; about a minute)"
(cd node_modules/code-server && npm_config_unsafe_perm=true npm run postinstall >&2)

touch "$STAMP"
log "installed in $TOOLS ($(du -sh "$TOOLS" | cut -f1))"
echo "$TOOLS"
