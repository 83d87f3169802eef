#!/usr/bin/env bash
# Regenerates the certificate fixtures used by the filter/src/identity/ tests.
# Run once from anywhere: `filter/testdata/gen.sh`. The output (*.pem, *.der,
# *.sha256) is committed; private keys are thrown away, the tests never need them.
# Requires the `openssl` CLI (tested with OpenSSL 3.0).
set -euo pipefail

cd "$(dirname "$0")"
OID=1.3.6.1.4.1.55555.1.1            # the label otherName OID the tests configure
SPIFFE=spiffe://cluster.local/ns/qa/sa/tester
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

b64() { printf '%s' "$1" | openssl base64 -A; }

openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca.key"
openssl req -x509 -new -key "$tmp/ca.key" -sha256 -days 36500 \
  -subj "/O=rollout-filter tests/CN=Test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem

serial=1000
# leaf NAME SAN: a leaf certificate signed by the test CA with subjectAltName=SAN.
leaf() {
  local name=$1 san=$2
  serial=$((serial + 1))
  openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/$name.key"
  openssl req -new -key "$tmp/$name.key" -subj "/O=rollout-filter tests/CN=$name" \
    -out "$tmp/$name.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=%s\n' \
    "$san" >"$tmp/$name.ext"
  openssl x509 -req -in "$tmp/$name.csr" -CA ca.pem -CAkey "$tmp/ca.key" \
    -set_serial "$serial" -days 36500 -sha256 -extfile "$tmp/$name.ext" -out "$name.pem"
}

GOOD_JSON='{"rolloutId":"checkout-2026-11","version":"canary","weight":30}'

leaf spiffe "URI:$SPIFFE"
leaf uri-label-a "URI:$SPIFFE,URI:rollout://checkout-2026-11?version=canary"
leaf uri-label-b "URI:$SPIFFE,URI:rollout=checkout-2026-11;weight=30"
leaf othername-utf8 "URI:$SPIFFE,otherName:$OID;UTF8:$(b64 "$GOOD_JSON")"
# IA5String, with the base64 padding ("==", the JSON is 64 bytes) stripped.
leaf othername-ia5 "URI:$SPIFFE,otherName:$OID;IA5STRING:$(b64 '{"rolloutId":"checkout-2026-11","version":"stable","weight":100}' | tr -d =)"
leaf dns "DNS:api.qa.example.com,DNS:web.qa.example.com"
leaf other-rollout "URI:$SPIFFE,URI:rollout://search-2026-12?version=canary"
leaf duplicate "URI:$SPIFFE,URI:rollout://checkout-2026-11?version=canary,otherName:$OID;UTF8:$(b64 '{"rolloutId":"checkout-2026-11","weight":50}')"
leaf bad-base64 "URI:$SPIFFE,otherName:$OID;UTF8:not*base64!"
leaf bad-json "URI:$SPIFFE,otherName:$OID;UTF8:$(b64 '{"rolloutId":"checkout-2026-11",')"
leaf unknown-field "URI:$SPIFFE,otherName:$OID;UTF8:$(b64 '{"rolloutId":"checkout-2026-11","version":"canary","color":"blue"}')"
leaf weight-101 "URI:$SPIFFE,otherName:$OID;UTF8:$(b64 '{"rolloutId":"checkout-2026-11","weight":101}')"
leaf bad-uri-label "URI:$SPIFFE,URI:rollout://checkout-2026-11?version=canary&color=blue"

openssl x509 -in spiffe.pem -outform DER -out spiffe.der
# Envoy's XFCC `Hash=`: lowercase hex SHA-256 of the DER certificate.
openssl dgst -sha256 -r spiffe.der | cut -d' ' -f1 >spiffe.sha256
openssl x509 -in othername-utf8.pem -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1 >othername-utf8.sha256
