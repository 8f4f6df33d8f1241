#!/usr/bin/env bash
# Makes a throwaway certificate authority and certificates for TLS tests in DIR:
#   ca.crt ca.key            the test CA
#   server.crt server.key    signed by it, for 127.0.0.1, ::1 and localhost (Redis uses it for
#                            clients and, with --tls-cluster yes, for the cluster bus both ways)
#   client.crt client.key    signed by it, for a Redis with --tls-auth-clients yes
#   other-ca.crt             an unrelated CA: trusting it instead must fail
# EC P-256 keys, valid two days. Needs openssl (scripts/setup.sh installs it).
#
#   scripts/tls-certs.sh DIR
set -euo pipefail
dir=${1:?usage: $0 DIR}
mkdir -p "$dir"
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

ca() { # name subject
    openssl req -x509 "${ec[@]}" -keyout "$1.key" -out "$1.crt" -days 2 -subj "/CN=$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}

leaf() { # name subject extensions
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "$3" >"$1.ext"
    openssl req "${ec[@]}" -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 2 -extfile "$1.ext" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

ca ca "FI Scale test CA"
ca other-ca "FI Scale unrelated CA"
rm -f other-ca.key
leaf server 127.0.0.1 "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"
leaf client fi-test-client "extendedKeyUsage=clientAuth"
chmod 600 ./*.key
