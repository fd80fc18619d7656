#!/usr/bin/env bash
# Regenerates the clients' code from every .proto under proto/:
#   clients/python/gen/         grpc_tools.protoc (bundled protoc): *_pb2.py,
#                               *_pb2_grpc.py, and mypy-protobuf's .pyi stubs
#   clients/typescript/src/gen/ buf generate (buf.gen.yaml) with protoc-gen-es,
#                               plus google/rpc/error_details_pb.ts (the
#                               BadRequest and RetryInfo of error statuses)
#                               from the error_details.proto that the pinned
#                               googleapis-common-protos of the Python venv
#                               ships
# Both folders are wholly generated: they are replaced, so files of a removed
# proto disappear. Run it after any change under proto/ and commit the result;
# clients/test.sh fails when the committed code differs from what this makes.
#
#   clients/generate.sh          regenerate in place
#   clients/generate.sh OUT      write OUT/python/gen and OUT/typescript/src/gen
#                                instead (the drift check of clients/test.sh)
#
# No protoc binary and no network: the tools come from clients/python/.venv
# and clients/typescript/node_modules (clients/setup.sh makes them when
# missing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

die() { printf 'clients/generate: error: %s\n' "$*" >&2; exit 1; }

py=clients/python/.venv/bin/python
buf=clients/typescript/node_modules/.bin/buf
if [ ! -x "$py" ] || [ ! -x "$buf" ] \
  || ! "$py" -c 'import grpc_tools, mypy_protobuf, google.rpc.error_details_pb2' 2>/dev/null; then
  clients/setup.sh
fi

mapfile -t protos < <(find proto -name '*.proto' -type f | LC_ALL=C sort)
[ "${#protos[@]}" -gt 0 ] || die "no .proto file under proto/"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# ---- Python ----
mkdir -p "$stage/python/gen"
# mypy-protobuf says "Writing mypy to ..." for every file: keep only errors.
if ! "$py" -m grpc_tools.protoc -Iproto \
  --python_out="$stage/python/gen" \
  --grpc_python_out="$stage/python/gen" \
  --plugin=protoc-gen-mypy=clients/python/.venv/bin/protoc-gen-mypy \
  --plugin=protoc-gen-mypy_grpc=clients/python/.venv/bin/protoc-gen-mypy_grpc \
  --mypy_out="$stage/python/gen" \
  --mypy_grpc_out="$stage/python/gen" \
  "${protos[@]}" 2>"$stage/protoc.log"; then
  grep -v '^Writing mypy to ' "$stage/protoc.log" >&2 || true
  die "grpc_tools.protoc failed"
fi
# Every generated folder is a PEP 420 namespace package (no __init__.py, so
# another distribution may add daas.v2); py.typed makes type checkers use the
# .pyi stubs (PEP 561).
find "$stage/python/gen" -name '*.py' -printf '%h\n' | sort -u | while read -r dir; do
  : > "$dir/py.typed"
done

# ---- TypeScript ----
# buf.gen.yaml writes to clients/typescript/src/gen under the --output base.
"$buf" generate --template buf.gen.yaml --output "$stage/ts"
mkdir -p "$stage/typescript/src"
mv "$stage/ts/clients/typescript/src/gen" "$stage/typescript/src/gen"
# google.rpc error details for the TypeScript client (Python has them from
# googleapis-common-protos itself). The .proto is copied alone into the
# stage, so buf compiles just it (and the built-in duration.proto).
rpc_dir=$("$py" -c 'import google.rpc.error_details_pb2 as m, os; print(os.path.dirname(m.__file__))')
mkdir -p "$stage/rpc-proto/google/rpc"
cp "$rpc_dir/error_details.proto" "$stage/rpc-proto/google/rpc/"
"$buf" generate "$stage/rpc-proto" --output "$stage/rpc" --template '{"version": "v2", "plugins": [{
  "local": "clients/typescript/node_modules/.bin/protoc-gen-es",
  "out": "gen", "opt": ["target=ts", "import_extension=js"]}]}'
mv "$stage/rpc/gen/google" "$stage/typescript/src/gen/google"

# ---- Install ----
if [ $# -ge 1 ]; then
  out=$1
  mkdir -p "$out/python" "$out/typescript/src"
  rm -rf "$out/python/gen" "$out/typescript/src/gen"
  cp -R "$stage/python/gen" "$out/python/gen"
  cp -R "$stage/typescript/src/gen" "$out/typescript/src/gen"
else
  rm -rf clients/python/gen clients/typescript/src/gen
  mkdir -p clients/typescript/src
  mv "$stage/python/gen" clients/python/gen
  mv "$stage/typescript/src/gen" clients/typescript/src/gen
  printf 'clients/generate: %d proto file(s) -> clients/python/gen, clients/typescript/src/gen\n' \
    "${#protos[@]}"
fi
