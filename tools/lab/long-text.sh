#!/bin/sh
# A long public-domain text for the attention policies' measurements (docs/lab.md): the book of
# Genesis and of Exodus in the King James Version (public domain), from Debian's bible-kjv
# packages (apt-get download: no root needed), as plain prose without verse numbers.
# Usage: tools/lab/long-text.sh OUT.txt   (about 64,000 words; 80,000 SmolLM2 tokens)
set -eu
out=${1:?usage: $0 OUT.txt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download bible-kjv bible-kjv-text >/dev/null 2>&1) ||
  { echo "apt-get download bible-kjv bible-kjv-text failed" >&2; exit 1; }
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
# Chapter headings ("Genesis 12") and blank lines go; verse numbers go; lines join into prose.
"$work/root/usr/bin/bible" -p "$work/root/usr/lib" -l10000 "gen1:1-gen50:26" "ex1:1-ex40:38" \
  | grep -v -E '^(Genesis|Exodus) [0-9]+$' \
  | sed -E 's/^ *[0-9]+ //' \
  | grep -v '^$' \
  | tr '\n' ' ' >"$out"
echo >>"$out"
wc -w "$out" >&2
