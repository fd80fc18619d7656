#!/usr/bin/env bash
# Rebuilds iron-remote-desktop-rdp.js (the IronRDP web client's RDP backend,
# its WASM inlined) from IronRDP source, as VENDOR.md says; not part of
# `make test` (~30 min the first time, 1.5 GB of caches). Debian 12, root.
#
#   build.sh IRONRDP_GIT_DIR [REV]     e.g. a clone of github.com/Devolutions/IronRDP
#
# rustup's toolchain has no wasm32 target here, so the WASM is built with
# Debian's rustc-web (1.96, LLVM with the WebAssembly backend) and its std
# built from rust-web-src (-Zbuild-std). Environment: WORK (default
# /var/tmp/daas-ironrdp-build, caches and the tools), DIPLOMAT_MIRROR (a
# local git mirror of github.com/CBenoit/diplomat when GitHub is out of
# reach: IronRDP's [patch.crates-io] names it, though the web crate does not
# use it). Writes iron-remote-desktop-rdp.js next to this script and prints
# its SHA-256 for VENDOR.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=${1:?usage: build.sh IRONRDP_GIT_DIR [REV]}
rev=${2:-18e259cd108b1debe6598b93f760af5d527ad194}
work=${WORK:-/var/tmp/daas-ironrdp-build}
wbg_version=0.2.126 # wasm-bindgen in IronRDP's Cargo.lock at REV
binaryen_version=132.0.0
export CARGO_HOME=$work/cargo-home
step() { local t=$SECONDS; echo "== $1"; "${@:2}"; echo "== $1: $((SECONDS - t)) s"; }

packages() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustc-web cargo-web rust-web-src lld-22 >/dev/null
}
source_tree() {
  rm -rf "$work/IronRDP" && mkdir -p "$work/IronRDP"
  git -C "$repo" archive "$rev" | tar -x -C "$work/IronRDP"
}
tools() {
  "$work/tools/bin/wasm-bindgen" --version 2>/dev/null | grep -q "$wbg_version" ||
    cargo install --locked --root "$work/tools" wasm-bindgen-cli --version "$wbg_version"
  [[ -x $work/tools/npm/node_modules/.bin/wasm-opt ]] ||
    npm install --no-audit --no-fund --prefix "$work/tools/npm" "binaryen@$binaryen_version"
}
fetch() {
  # Debian's cargo (system libgit2 1.5) cannot check out git dependencies:
  # rustup's cargo fetches them, Debian's reuses the checkout.
  local config=$work/gitconfig
  : >"$config"
  if [[ -n ${DIPLOMAT_MIRROR:-} ]]; then
    printf '[url "file://%s"]\n\tinsteadOf = https://github.com/CBenoit/diplomat\n' "$DIPLOMAT_MIRROR" >>"$config"
  fi
  (cd "$work/IronRDP" && CARGO_NET_GIT_FETCH_WITH_CLI=true GIT_CONFIG_GLOBAL=$config cargo fetch --locked)
}
wasm() {
  # What `cargo xtask web build` (wasm-pack) does, with build-std.
  cd "$work/IronRDP/crates/ironrdp-web"
  PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
    RUSTFLAGS='-Ctarget-feature=+simd128,+bulk-memory --cfg getrandom_backend="wasm_js" -Copt-level=s -Ccodegen-units=1 -Cllvm-args=-enable-dfa-jump-thread' \
    /usr/bin/cargo build --locked --lib --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort
  rm -rf pkg
  "$work/tools/bin/wasm-bindgen" ../../target/wasm32-unknown-unknown/release/ironrdp_web.wasm \
    --out-dir pkg --typescript --target web
  cd pkg
  "$work/tools/npm/node_modules/.bin/wasm-opt" ironrdp_web_bg.wasm -o ironrdp_web_bg.opt.wasm -O
  mv ironrdp_web_bg.opt.wasm ironrdp_web_bg.wasm
  # As xtask/src/web.rs: vite inlines the ?url asset as a data: URL.
  python3 - <<'PY'
p = "ironrdp_web.js"
s = open(p).read()
old = "new URL('ironrdp_web_bg.wasm', import.meta.url)"
assert s.count(old) == 1, "wasm-bindgen's output changed"
open(p, "w").write("import wasmUrl from './ironrdp_web_bg.wasm?url';\n\n" + s.replace(old, "wasmUrl"))
PY
}
bundle() {
  cd "$work/IronRDP/web-client/iron-remote-desktop-rdp"
  npm ci --no-audit --no-fund --silent
  rm -rf dist && npx vite build
  cp dist/iron-remote-desktop-rdp.js "$here/"
}

step "Debian packages" packages
step "IronRDP $rev" source_tree
step "wasm-bindgen-cli $wbg_version, binaryen $binaryen_version" tools
step "cargo fetch" fetch
step "the WASM" wasm
step "the bundle" bundle
sha256sum "$here/iron-remote-desktop-rdp.js"
