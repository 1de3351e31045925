#!/usr/bin/env bash
# Replays the example scenario through the ceasefire-ledger CLI only:
#   three signatories (two parties to the conflict and a mediator, 2 of 3 to
#   govern) found the ledger, define five zones and four commitments, and
#   register two monitoring missions, which report a day of observations;
#   then mission Bravo's key is revoked and its next report is refused.
#
# Usage: examples/scenario/replay.sh            (builds and uses target/release)
#   BIN=path/to/ceasefire-ledger WORK=dir PORT=50061 examples/scenario/replay.sh
# Everything it creates (keys, genesis, data directory) goes under WORK.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
if [[ -z "${BIN:-}" ]]; then
    cargo build --release --quiet --manifest-path "$HERE/../../Cargo.toml"
    BIN="$HERE/../../target/release/ceasefire-ledger"
fi
WORK="${WORK:-$(mktemp -d -t ceasefire-scenario.XXXXXX)}"
PORT="${PORT:-50061}"
export CEASEFIRE_LEDGER_SERVER="http://127.0.0.1:$PORT"
AGREEMENT=eastern-sector-2026
KEYS="$WORK/keys"
mkdir -p "$KEYS" "$WORK/signed"
step() { printf '\n== %s\n' "$*" >&2; }

step "keys: each party makes its own (keygen prints the public key)"
for party in party-north party-south mediator mission-alpha mission-bravo; do
    "$BIN" keygen --party-id "$party" --out "$KEYS/$party.key" >"$KEYS/$party.pub"
done
"$BIN" keygen --out "$KEYS/operator.key" >"$KEYS/operator.pub"

step "genesis: written once, signed by two of the three signatories"
"$BIN" init --agreement-id "$AGREEMENT" \
    --origin "ledger.example.org/$AGREEMENT" \
    --title "Agreement on the cessation of hostilities, eastern sector" \
    --signatory "party-north,$(cat "$KEYS/party-north.pub"),Party North" \
    --signatory "party-south,$(cat "$KEYS/party-south.pub"),Party South" \
    --signatory "mediator,$(cat "$KEYS/mediator.pub"),Mediator" \
    --threshold 2 \
    --operator-public-key "$(cat "$KEYS/operator.pub")" \
    --author mediator \
    --out "$WORK/genesis.json"
"$BIN" sign --key "$KEYS/mediator.key" "$WORK/genesis.json"
"$BIN" sign --key "$KEYS/party-north.key" "$WORK/genesis.json"

step "serve the ledger from the genesis"
"$BIN" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" \
    --genesis "$WORK/genesis.json" --operator-key "$KEYS/operator.key" \
    2>"$WORK/server.log" &
SERVER_PID=$!
trap 'kill -TERM $SERVER_PID 2>/dev/null; wait $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
done

# A governance event: the mediator drafts and signs it, Party North co-signs,
# then it is submitted with both signatures.
govern() {
    local source="$1" name
    name="$(basename "$source")"
    sed -e "s|@MISSION_ALPHA_KEY@|$(cat "$KEYS/mission-alpha.pub")|" \
        -e "s|@MISSION_BRAVO_KEY@|$(cat "$KEYS/mission-bravo.pub")|" \
        "$source" >"$WORK/signed/draft-$name"
    "$BIN" sign --key "$KEYS/mediator.key" --agreement-id "$AGREEMENT" \
        --out "$WORK/signed/$name" "$WORK/signed/draft-$name" 2>/dev/null
    "$BIN" sign --key "$KEYS/party-north.key" "$WORK/signed/$name" 2>/dev/null
    "$BIN" submit "$WORK/signed/$name"
}

step "zones, commitments and the two monitoring missions"
for event in "$HERE"/governance/*.json; do govern "$event"; done

step "a day of observations from each mission (dated yesterday, so all are in the 48 h windows)"
DAY="$(date -u -d yesterday +%F)"
mkdir -p "$WORK/observations"
for file in "$HERE"/observations/*; do
    sed -e "s|@DAY@|$DAY|g" "$file" >"$WORK/observations/$(basename "$file")"
done
"$BIN" submit --key "$KEYS/mission-alpha.key" "$WORK/observations/mission-alpha.ndjson"
"$BIN" submit --key "$KEYS/mission-bravo.key" "$WORK/observations/mission-bravo.ndjson"

step "mission Bravo's key is revoked"
govern "$HERE/revoke-mission-bravo-key.json"

step "mission Bravo's next report, signed with the revoked key, must be refused"
if "$BIN" submit --key "$KEYS/mission-bravo.key" \
    "$WORK/observations/mission-bravo-after-revocation.json"; then
    echo "error: a revoked key's submission was accepted" >&2
    exit 1
fi
step "compliance status after the day"
"$BIN" status >&2
echo "scenario complete: ledger in $WORK/data" >&2
