#!/usr/bin/env bash
# Records the API of a release: clients/released/api.binpb (a buf image of
# proto/) and clients/released/VERSION (the release and the commit). Run it
# when a version is released, and commit both: clients/test.sh then checks
# every later change of proto/ against that API with `buf breaking` (FILE
# rules), so what a released client was generated from keeps working.
#
#   clients/release-api.sh VERSION     e.g. clients/release-api.sh 0.2.0
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

die() { printf 'clients/release-api: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: clients/release-api.sh VERSION"
version=$1
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "VERSION must be MAJOR.MINOR.PATCH, not '$version'"
buf=clients/typescript/node_modules/.bin/buf
[ -x "$buf" ] || clients/setup.sh
git diff --quiet -- proto || die "proto/ has uncommitted changes: release a committed API"

"$buf" build proto -o clients/released/api.binpb
printf '%s %s\n' "$version" "$(git rev-parse --short=12 HEAD)" > clients/released/VERSION
echo "clients/released/: the API of $version ($(git rev-parse --short=12 HEAD)); commit it"
