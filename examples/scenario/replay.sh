#!/usr/bin/env bash
# Replays the example scenario through the ceasefire-ledger CLI only:
#   three signatories (two parties to the conflict and a mediator, 2 of 3 to
#   govern) found the ledger, define five zones and four commitments, and
#   register two monitoring missions, which report a day of observations;
#   then mission Bravo's key is revoked and its next report is refused.
#   Each signatory runs a witness of the ledger, and the signatories set a
#   witness policy of two of the three: the ledger collects their
#   cosignatures, and the closing audit names the cosigners.
#
# Usage: examples/scenario/replay.sh            (builds and uses target/release)
#   BIN=path/to/ceasefire-ledger WORK=dir PORT=50061 \
#   WITNESS_PORTS="50062 50063 50064" examples/scenario/replay.sh
# Everything it creates (keys, genesis, data directories, logs) goes under WORK.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
if [[ -z "${BIN:-}" ]]; then
    cargo build --release --quiet --manifest-path "$HERE/../../Cargo.toml"
    BIN="$HERE/../../target/release/ceasefire-ledger"
fi
WORK="${WORK:-$(mktemp -d -t ceasefire-scenario.XXXXXX)}"
PORT="${PORT:-50061}"
# The witnesses of Party North, Party South and the mediator, in that order.
read -r -a WITNESS_PORTS <<<"${WITNESS_PORTS:-$((PORT + 1)) $((PORT + 2)) $((PORT + 3))}"
SIGNATORIES=(party-north party-south mediator)
export CEASEFIRE_LEDGER_SERVER="http://127.0.0.1:$PORT"
AGREEMENT=eastern-sector-2026
KEYS="$WORK/keys"
mkdir -p "$KEYS" "$WORK/signed"
step() { printf '\n== %s\n' "$*" >&2; }
PIDS=()
trap 'for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done' EXIT
# Waits until something listens on port $1; fails with log $3 if process $2 exits.
wait_listening() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || { cat "$3" >&2; exit 1; }
        sleep 0.1
    done
    echo "error: nothing listens on port $1; see $3" >&2
    exit 1
}

step "keys: each party makes its own (keygen prints the public key)"
for party in party-north party-south mediator mission-alpha mission-bravo; do
    "$BIN" keygen --party-id "$party" --out "$KEYS/$party.key" >"$KEYS/$party.pub"
done
"$BIN" keygen --out "$KEYS/operator.key" >"$KEYS/operator.pub"

step "witness keys: each signatory makes one for its witness (witness keygen prints its vkey)"
for party in "${SIGNATORIES[@]}"; do
    "$BIN" witness keygen --name "$party.example/witness" \
        --out "$KEYS/$party-witness.key" >"$KEYS/$party-witness.vkey"
done

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
PIDS+=($!)
wait_listening "$PORT" "$!" "$WORK/server.log"

step "each signatory runs a witness of the ledger (it trusts the operator key in the genesis)"
for index in 0 1 2; do
    party="${SIGNATORIES[$index]}"
    port="${WITNESS_PORTS[$index]}"
    "$BIN" witness serve --name "$party.example/witness" --key "$KEYS/$party-witness.key" \
        --listen "127.0.0.1:$port" --data-dir "$WORK/witness-$party" \
        --log-genesis "$WORK/genesis.json" 2>"$WORK/witness-$party.log" &
    PIDS+=($!)
    wait_listening "$port" "$!" "$WORK/witness-$party.log"
    echo "http://127.0.0.1:$port" >"$KEYS/$party-witness.url"
done

# A witness's Ed25519 public key in base64, from its vkey
# (<name>+<key id>+base64(0x04 || key); the base64 may hold "+" itself):
# what a SetWitnessPolicy event names.
witness_public_key() {
    cut -d+ -f3- "$KEYS/$1-witness.vkey" | base64 -d | tail -c 32 | base64 -w0
}

# A governance event: the mediator drafts and signs it, Party North co-signs,
# then it is submitted with both signatures.
govern() {
    local source="$1" name
    name="$(basename "$source")"
    sed -e "s|@MISSION_ALPHA_KEY@|$(cat "$KEYS/mission-alpha.pub")|" \
        -e "s|@MISSION_BRAVO_KEY@|$(cat "$KEYS/mission-bravo.pub")|" \
        -e "s|@PARTY_NORTH_WITNESS_KEY@|$(witness_public_key party-north)|" \
        -e "s|@PARTY_NORTH_WITNESS_URL@|$(cat "$KEYS/party-north-witness.url")|" \
        -e "s|@PARTY_SOUTH_WITNESS_KEY@|$(witness_public_key party-south)|" \
        -e "s|@PARTY_SOUTH_WITNESS_URL@|$(cat "$KEYS/party-south-witness.url")|" \
        -e "s|@MEDIATOR_WITNESS_KEY@|$(witness_public_key mediator)|" \
        -e "s|@MEDIATOR_WITNESS_URL@|$(cat "$KEYS/mediator-witness.url")|" \
        "$source" >"$WORK/signed/draft-$name"
    "$BIN" sign --key "$KEYS/mediator.key" --agreement-id "$AGREEMENT" \
        --out "$WORK/signed/$name" "$WORK/signed/draft-$name" 2>/dev/null
    "$BIN" sign --key "$KEYS/party-north.key" "$WORK/signed/$name" 2>/dev/null
    "$BIN" submit "$WORK/signed/$name"
}

step "zones, commitments, the two monitoring missions and the witness policy (2 of 3)"
for event in "$HERE"/governance/*.json; do govern "$event"; done

step "a day of observations from each mission (dated yesterday, so all are in the 48 h windows)"
DAY="$(date -u -d yesterday +%F)"
mkdir -p "$WORK/observations"
for file in "$HERE"/observations/*; do
    sed -e "s|@DAY@|$DAY|g" "$file" >"$WORK/observations/$(basename "$file")"
done
"$BIN" submit --key "$KEYS/mission-alpha.key" "$WORK/observations/mission-alpha.ndjson"
# Bravo also waits for its day to be witnessed: a checkpoint cosigned by two
# of the three witnesses, printed after the receipts with its cosigners.
"$BIN" submit --key "$KEYS/mission-bravo.key" --wait-witnessed \
    "$WORK/observations/mission-bravo.ndjson"

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

step "an independent audit of the whole ledger, and who witnessed it"
"$BIN" verify --server "$CEASEFIRE_LEDGER_SERVER" >&2
echo "scenario complete: ledger in $WORK/data" >&2
