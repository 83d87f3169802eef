#!/usr/bin/env bash
# Demo-only certificates for the mTLS listener in envoy-config/envoy.yaml and for
# `make run`. Keys are committed on purpose: never trust this CA anywhere else.
# Regenerate: envoy-config/demo-certs/gen.sh (needs the openssl CLI).
set -euo pipefail
cd "$(dirname "$0")"
OID=1.3.6.1.4.1.55555.1.1
b64() { printf '%s' "$1" | openssl base64 -A; }

openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days 36500 -subj "/O=rollout-filter demo/CN=Demo CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem

serial=2000
leaf() {
  local name=$1 san=$2 eku=$3
  serial=$((serial + 1))
  openssl ecparam -name prime256v1 -genkey -noout -out "$name.key"
  openssl req -new -key "$name.key" -subj "/O=rollout-filter demo/CN=$name" -out "$name.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$eku" "$san" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -set_serial "$serial" -days 36500 -sha256 \
    -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

leaf server "DNS:localhost,IP:127.0.0.1" serverAuth
# A caller pinned to canary by a URI label.
leaf client-pinned "URI:spiffe://demo.local/ns/shop/sa/cart,URI:rollout://checkout-2026-11?version=canary" clientAuth
# A caller with its own 50 % canary share, by an otherName JSON label.
leaf client-weight50 "URI:spiffe://demo.local/ns/shop/sa/search,otherName:$OID;UTF8:$(b64 '{"rolloutId":"checkout-2026-11","version":"canary","weight":50}')" clientAuth
# A caller trusted to override (namespace qa).
leaf client-qa "URI:spiffe://demo.local/ns/qa/sa/tester" clientAuth
rm -f ca.srl
