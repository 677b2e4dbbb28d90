#!/usr/bin/env bash
# A tour of the rill HTTP API with curl: every endpoint, every record format and codec, a
# partial success, an async produce, reading back. Prints each request and its answer and
# stops at the first unexpected status.
#
#   rill --config broker.toml &            # or: cargo run --release -- --data-dir /tmp/rill
#   examples/curl-walkthrough.sh
#
# Environment:
#   RILL          base URL of the broker (default http://127.0.0.1:8080)
#   RILL_API_KEY  sent as X-API-Key when set (for [auth] enabled = true)
#
# Uses jq to pretty-print and pick fields when it is installed; works without it.
set -euo pipefail

RILL=${RILL:-http://127.0.0.1:8080}
RILL=${RILL%/}
TOPIC="walkthrough-$(date +%Y%m%d%H%M%S)-$$"

AUTH=()
if [[ -n ${RILL_API_KEY:-} ]]; then
  AUTH=(-H "X-API-Key: ${RILL_API_KEY}")
fi

HAVE_JQ=false
if command -v jq >/dev/null 2>&1; then
  HAVE_JQ=true
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# call EXPECTED_STATUS METHOD PATH [JSON_BODY] [MAX_LINES]
# Sends the request, prints the status, the Location / Retry-After headers if any, and the
# body (pretty-printed JSON, or at most MAX_LINES lines). Exits if the status is not expected.
# The body stays in $TMP/body for `field`.
call() {
  local expect=$1 method=$2 path=$3 body=${4-} max_lines=${5-200}
  local args=(-sS -X "$method" -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}')
  if [[ -n $body ]]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$body")
  fi
  echo
  echo "==> $method $path"
  local status
  status=$(curl "${args[@]}" ${AUTH[@]+"${AUTH[@]}"} "$RILL$path")
  echo "<== HTTP $status"
  grep -i -E '^(location|retry-after):' "$TMP/headers" || true
  if [[ -s $TMP/body ]]; then
    if ! { $HAVE_JQ && jq . "$TMP/body" >"$TMP/pretty" 2>/dev/null; }; then
      cp "$TMP/body" "$TMP/pretty"
    fi
    head -n "$max_lines" "$TMP/pretty"
    if [[ -n $(tail -c 1 "$TMP/pretty") ]]; then
      echo
    fi
    if (($(wc -l <"$TMP/pretty") > max_lines)); then
      echo "... ($(wc -l <"$TMP/pretty") lines in all)"
    fi
  fi
  if [[ $status != "$expect" ]]; then
    echo "!!! expected HTTP $expect, got $status" >&2
    exit 1
  fi
}

# field NAME: a top-level string field of the last answer.
field() {
  if $HAVE_JQ; then
    jq -r --arg f "$1" '.[$f]' "$TMP/body"
  else
    sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" "$TMP/body" | head -n 1
  fi
}

section() {
  echo
  echo "################ $* ################"
}

NOW_MS=$(($(date +%s) * 1000))

section "Topics: create, list, describe"
# Three partitions. JSON values go to partitions 0 and 1 (or wherever their key hashes);
# every non-JSON value below is sent to partition 2 explicitly, so partitions 0 and 1 can be
# read back as JSON.
call 201 POST /api/topics "{\"name\": \"$TOPIC\", \"partitions\": 3, \"config\": {\"compression\": \"none\", \"retention_ms\": 86400000}}"
call 200 GET /api/topics
call 200 GET "/api/topics/$TOPIC"
call 409 POST /api/topics "{\"name\": \"$TOPIC\", \"partitions\": 3}"

section "Produce, sync: JSON values, string keys, headers, explicit partition and timestamp"
call 200 POST "/api/topics/$TOPIC/produce" "$(cat <<EOF
{
  "key_format": "string",
  "value_format": "json",
  "records": [
    {"key": "user-1", "value": {"id": 7, "item": "book", "qty": 1}},
    {"key": "user-2", "value": {"id": 8, "item": "pen", "qty": 3},
     "partition": 0,
     "headers": [{"key": "trace-id", "value": "abc123"},
                 {"key": "raw", "value": {"base64": "3q2+7w=="}}],
     "timestamp": $NOW_MS},
    {"key": null, "value": [1, 2, 3], "partition": 1}
  ]
}
EOF
)"

section "Produce, string format"
call 200 POST "/api/topics/$TOPIC/produce" '{
  "key_format": "string", "value_format": "string",
  "records": [
    {"key": "greeting", "value": "hello, rill", "partition": 2},
    {"key": "greeting", "value": "héllo again (UTF-8)", "partition": 2}
  ]
}'

section "Produce, binary format (base64)"
B64=$(printf 'raw \001\002\003 bytes' | base64)
call 200 POST "/api/topics/$TOPIC/produce" "{
  \"key_format\": \"string\", \"value_format\": \"binary\",
  \"records\": [
    {\"key\": \"blob-1\", \"value\": \"$B64\", \"partition\": 2},
    {\"key\": \"blob-1\", \"value\": null, \"partition\": 2}
  ]
}"

section "Produce, Avro format with an inline schema"
call 200 POST "/api/topics/$TOPIC/produce" "$(cat <<'EOF'
{
  "key_format": "string",
  "value_format": "avro",
  "value_schema": "{\"type\":\"record\",\"name\":\"Order\",\"fields\":[{\"name\":\"id\",\"type\":\"long\"},{\"name\":\"note\",\"type\":[\"null\",\"string\"]}]}",
  "records": [
    {"key": "order-1", "value": {"id": 1, "note": {"string": "gift wrap"}}, "partition": 2},
    {"key": "order-2", "value": {"id": 2, "note": null}, "partition": 2}
  ]
}
EOF
)"

section "Produce with each compression codec"
for codec in gzip snappy lz4 zstd; do
  call 200 POST "/api/topics/$TOPIC/produce?compression=$codec" "{
    \"key_format\": \"string\",
    \"records\": [
      {\"key\": \"$codec-1\", \"value\": {\"codec\": \"$codec\", \"text\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}, \"partition\": 0},
      {\"key\": \"$codec-2\", \"value\": {\"codec\": \"$codec\", \"text\": \"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"}, \"partition\": 1}
    ]
  }"
done

section "Partial success: one bad record, the others appended (still 200)"
call 200 POST "/api/topics/$TOPIC/produce" "{
  \"key_format\": \"string\", \"value_format\": \"binary\",
  \"records\": [
    {\"key\": \"ok-1\", \"value\": \"$B64\", \"partition\": 2},
    {\"key\": \"bad\", \"value\": \"this is not base64!\", \"partition\": 2},
    {\"key\": \"ok-2\", \"value\": \"$B64\", \"partition\": 2}
  ]
}"

section "Whole-request errors"
call 404 POST "/api/topics/no-such-topic-$$/produce" '{"records": [{"value": 1}]}'
call 400 POST "/api/topics/$TOPIC/produce" '{"records": [{"value": 1}'
call 400 POST "/api/topics/$TOPIC/produce?compression=brotli" '{"records": [{"value": 1}]}'

section "Produce, async: 202 + Location, then poll the status URL"
call 202 POST "/api/topics/$TOPIC/produce?async=true" '{
  "key_format": "string",
  "records": [
    {"key": "async-1", "value": {"async": true, "n": 1}, "partition": 0},
    {"key": "async-2", "value": {"async": true, "n": 2}, "partition": 1}
  ]
}'
STATUS_URL=$(field status_url)
for attempt in $(seq 1 50); do
  call 200 GET "$STATUS_URL"
  state=$(field status)
  case $state in
    completed) break ;;
    failed | timeout)
      echo "!!! async request ended in $state" >&2
      exit 1
      ;;
  esac
  if ((attempt == 50)); then
    echo "!!! async request still $state after 50 polls" >&2
    exit 1
  fi
  sleep 0.1
done
call 404 GET /api/produce/status/01JDQ8Z6S3N5J8Q4V3C2B1A0ZX

section "Read back"
call 200 GET "/api/topics/$TOPIC"
call 200 GET "/api/topics/$TOPIC/partitions/0/records?offset=0&limit=100&key_format=string&value_format=json"
call 200 GET "/api/topics/$TOPIC/partitions/1/records?offset=0&key_format=string&value_format=json"
# Partition 2 holds string, binary and Avro bytes: binary renders anything (as base64)...
call 200 GET "/api/topics/$TOPIC/partitions/2/records?offset=0&limit=20&key_format=string&value_format=binary"
# ...while JSON cannot render them: 422 names the offset and field.
call 422 GET "/api/topics/$TOPIC/partitions/2/records?key_format=string&value_format=json"
# Past the end: an empty list.
call 200 GET "/api/topics/$TOPIC/partitions/0/records?offset=1000000"
call 404 GET "/api/topics/$TOPIC/partitions/9/records"

section "Operations"
call 200 GET /healthz
call 200 GET /readyz
call 200 GET /metrics "" 15
call 200 GET /api/openapi.json "" 15

section "Delete the topic"
call 204 DELETE "/api/topics/$TOPIC"
call 404 GET "/api/topics/$TOPIC"

echo
echo "walkthrough finished: every call answered as expected"
