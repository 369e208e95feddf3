#!/usr/bin/env bash
# The logic of lazydisk's GitHub Action (action.yml): convert SOURCE into
# one seekable image per format, sign each when a key is given, and report
# the digests as step outputs ($GITHUB_OUTPUT) and a job summary table
# ($GITHUB_STEP_SUMMARY). It reads its inputs from the environment, so it
# runs the same outside GitHub (cmd/lazydisk/action_test.go runs it against
# a registry on 127.0.0.1):
#
#   LAZYDISK_SOURCE            image to convert (any lazydisk reference, e.g. disk:fedora.qcow2)
#   LAZYDISK_DESTINATION       where to write; must contain {format} when several formats are asked for
#   LAZYDISK_FORMATS           estargz, zstd-chunked, or both (separated by spaces or commas)
#   LAZYDISK_PLATFORM          optional: os/arch[/variant]
#   LAZYDISK_CHUNK_SIZE        optional: e.g. 256K, 1M
#   LAZYDISK_SIGN_KEY          optional: the cosign private key itself (PEM), e.g. from a secret
#   COSIGN_PASSWORD            the key's password
#   LAZYDISK_SIGNATURE_FORMAT  optional: both (default), bundle or legacy
#   LAZYDISK                   optional: the lazydisk binary (default: lazydisk on PATH)
#
# Outputs: digest (of the first format), estargz-digest, zstd-chunked-digest,
# and estargz-image / zstd-chunked-image (the destination pinned by digest for
# registries, as it was written for OCI layouts).
set -euo pipefail

lazydisk=${LAZYDISK:-lazydisk}
src=${LAZYDISK_SOURCE:-}
dst=${LAZYDISK_DESTINATION:-}
formats=${LAZYDISK_FORMATS:-estargz}
out=${GITHUB_OUTPUT:-/dev/null}
summary=${GITHUB_STEP_SUMMARY:-/dev/null}

fail() {
  # ::error:: makes GitHub show the message on the step; elsewhere it is a plain line.
  echo "::error title=lazydisk::$*" >&2
  exit 1
}

[ -n "$src" ] || fail "the source input is empty: name the image to convert"
[ -n "$dst" ] || fail "the destination input is empty: name where to write the result"

read -r -a fmts <<<"${formats//,/ }"
[ ${#fmts[@]} -gt 0 ] || fail "the formats input is empty: use estargz, zstd-chunked or both"
for f in "${fmts[@]}"; do
  case $f in
  estargz | zstd-chunked) ;;
  *) fail "unknown format \"$f\": use estargz, zstd-chunked or both" ;;
  esac
done
if [ ${#fmts[@]} -gt 1 ] && [[ $dst != *"{format}"* ]]; then
  fail "several formats need a destination containing {format}, e.g. registry.example.com/vm/fedora:41-{format}"
fi

args=()
[ -z "${LAZYDISK_PLATFORM:-}" ] || args+=(--platform "$LAZYDISK_PLATFORM")
[ -z "${LAZYDISK_CHUNK_SIZE:-}" ] || args+=(--chunk-size "$LAZYDISK_CHUNK_SIZE")

work=$(mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/lazydisk-action.XXXXXX")
trap 'rm -rf "$work"' EXIT
signed=no
if [ -n "${LAZYDISK_SIGN_KEY:-}" ]; then
  # The key goes to a file only this user can read, removed on exit.
  (umask 077 && printf '%s\n' "$LAZYDISK_SIGN_KEY" >"$work/cosign.key")
  args+=(--sign-key "$work/cosign.key" --signature-format "${LAZYDISK_SIGNATURE_FORMAT:-both}")
  signed="yes (${LAZYDISK_SIGNATURE_FORMAT:-both})"
fi

rows=()
first=
for f in "${fmts[@]}"; do
  to=${dst//\{format\}/$f}
  echo "::group::lazydisk convert --$f $src $to"
  "$lazydisk" convert "--$f" --progress never --digestfile "$work/digest" "${args[@]}" "$src" "$to"
  echo "::endgroup::"
  digest=$(<"$work/digest")
  [[ $digest == sha256:* ]] || fail "lazydisk wrote no digest for $to"
  pinned=$to
  if [[ $to != oci:* ]]; then
    # registry/repo[:tag][@digest] -> registry/repo@digest; a tag's colon is
    # after the last slash, a port's before it.
    pinned=${to#docker://}
    pinned=${pinned%%@*}
    [[ ${pinned##*/} != *:* ]] || pinned=${pinned%:*}
    pinned="$pinned@$digest"
  fi
  {
    echo "$f-digest=$digest"
    echo "$f-image=$pinned"
    [ -n "$first" ] || echo "digest=$digest"
  } >>"$out"
  first=$digest
  rows+=("| $f | \`$to\` | \`$digest\` | $signed |")
done

{
  echo "### lazydisk convert"
  echo
  echo "Source: \`$src\`"
  echo
  echo "| format | destination | digest | signed |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} >>"$summary"
