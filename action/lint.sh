#!/usr/bin/env bash
# Runs actionlint (path in $1) over the workflows and action.yml, and over
# the example workflows in docs/ci.md. actionlint checks a local action's
# metadata and the inputs given to it when a workflow uses it as ./, so the
# docs' examples are checked as if they used this checkout's action.yml:
# they are copied, with "uses: lazydisk/lazydisk@REF" made "./", into a
# temporary project beside a copy of action.yml.
set -euo pipefail
actionlint=$1
cd "$(dirname "$0")/.."

"$actionlint" .github/workflows/*.yml

d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
# actionlint finds a project (and so ./ actions) by its .git directory.
git init -q "$d"
mkdir -p "$d/.github/workflows"
cp action.yml "$d/"
awk -v d="$d/.github/workflows" '
  /^```yaml$/ { n++; f = d "/ci-" n ".yml"; next }
  /^```/      { f = "" }
  f           { sub(/uses: lazydisk\/lazydisk@[^ ]*/, "uses: ./"); print > f }
' docs/ci.md
n=$(find "$d/.github/workflows" -name '*.yml' | wc -l)
[ "$n" -gt 0 ] || { echo "docs/ci.md has no yaml workflow to check" >&2; exit 1; }
grep -q 'uses: \./' "$d"/.github/workflows/*.yml || { echo "docs/ci.md's workflows do not use the action (lazydisk/lazydisk@REF)" >&2; exit 1; }
echo "actionlint: .github/workflows, action.yml, and $n workflow(s) of docs/ci.md"
(cd "$d" && "$actionlint" .github/workflows/*.yml)
