#!/usr/bin/env python3
"""Independent recomputation of the ceasefire-ledger compliance projection.

Written from docs/spec.md alone (plus proto/ceasefire/v1/*.proto for the
field numbers, and the JSON vectors of testdata/projection/ as inputs and
expected outputs), as an independent implementation in another language:
no Rust code was read. Python 3.11, standard library only.

Implements:
  - section 3   (leaf bytes: exact parse, seq, prev_leaf_hash chain,
                 received_at monotonicity, signature count/order, payload
                 length, leaf hash SHA-256(0x00 || leaf));
  - section 2   (strict Ed25519 verification of every leaf signature over
                 "ceasefire-ledger:event:v1\\n" || payload, pure Python);
  - section 1 / events.proto (a minimal protobuf wire-format decoder for
                 ceasefire.v1.Event and the messages it contains);
  - section 7   only where section 9 needs it: the attributed zone of an
                 observation (planar (lon, lat) polygon containment, boundary
                 inclusive, first zone in the commitment's order);
  - section 9   (9.1 conventions, 9.2 records, 9.3 state, 9.4 fold,
                 9.5 pairs and redefinitions, 9.6 summaries, 9.7 status
                 changes and updated_seq, 9.8 rollups, 9.9 digest) and the
                 vector layout of 9.10.

Every summary is recomputed from its window at every entry (not
incrementally).

Usage (from the repository root):
    python3 tests/independent/projection.py testdata/projection
Prints one line per vector file and ends with "N passed, M failed";
exits 0 only if every file passes.
"""

import hashlib
import json
import os
import struct
import sys

# ---------------------------------------------------------------------------
# Section 2: strict Ed25519 (RFC 8032 arithmetic, dalek verify_strict rules)

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_BY = (4 * pow(5, _P - 2, _P)) % _P


def _recover_x(y, sign):
    # RFC 8032 section 5.1.3; y must already be < p.
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        if sign:
            return None  # x = 0 with sign bit 1: not a canonical encoding
        return 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


_BX = _recover_x(_BY, 0)
_B = (_BX, _BY, 1, _BX * _BY % _P)
_IDENTITY = (0, 1, 1, 0)


def _add(p, q):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = 2 * t1 * t2 * _D % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(k, p):
    q = _IDENTITY
    while k:
        if k & 1:
            q = _add(q, p)
        p = _add(p, p)
        k >>= 1
    return q


def _encode(p):
    x, y, z, _ = p
    zi = pow(z, _P - 2, _P)
    x, y = x * zi % _P, y * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(b):
    """Decode a point; None unless b is the canonical encoding of a point."""
    if len(b) != 32:
        return None
    n = int.from_bytes(b, "little")
    sign, y = n >> 255, n & ((1 << 255) - 1)
    if y >= _P:
        return None
    x = _recover_x(y, sign)
    if x is None:
        return None
    p = (x, y, 1, x * y % _P)
    if _encode(p) != b:
        return None
    return p


def _is_small_order(p):
    return _encode(_mul(8, p)) == _encode(_IDENTITY)


def ed25519_verify_strict(public_key, message, signature):
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a = _decode(public_key)
    r = _decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    if _is_small_order(a) or _is_small_order(r):
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % _L
    # cofactorless: [S]B == R + [k]A
    return _encode(_mul(s, _B)) == _encode(_add(r, _mul(k, a)))


def ed25519_public_key(seed):
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return _encode(_mul(a, _B))


# ---------------------------------------------------------------------------
# Minimal protobuf wire-format decoder (proto3, events.proto)

class DecodeError(Exception):
    pass


def _varint(buf, i):
    result = shift = 0
    while True:
        if i >= len(buf):
            raise DecodeError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift >= 70:
            raise DecodeError("varint too long")
    return result & 0xFFFFFFFFFFFFFFFF, i


def _fields(buf):
    """Yield (field_number, wire_type, value) of a message's bytes."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise DecodeError("field number 0")
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            if i + 8 > len(buf):
                raise DecodeError("truncated fixed64")
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise DecodeError("truncated length-delimited field")
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            if i + 4 > len(buf):
                raise DecodeError("truncated fixed32")
            v, i = buf[i:i + 4], i + 4
        else:
            raise DecodeError("unsupported wire type %d" % wt)
        yield num, wt, v


# Scalar kinds: (wire type, converter)
def _s64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def _s32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


_SCALARS = {
    "string": (2, lambda v: bytes(v).decode("utf-8")),
    "bytes": (2, bytes),
    "uint64": (0, lambda v: v),
    "uint32": (0, lambda v: v & 0xFFFFFFFF),
    "int64": (0, _s64),
    "int32": (0, _s32),
    "enum": (0, _s32),
    "bool": (0, lambda v: v != 0),
    "double": (1, lambda v: struct.unpack("<d", v)[0]),
}
_DEFAULTS = {"string": "", "bytes": b"", "uint64": 0, "uint32": 0, "int64": 0,
             "int32": 0, "enum": 0, "bool": False, "double": 0.0}

# Schemas: field number -> (name, kind, repeated). kind is a scalar name or a
# schema dict (embedded message). "oneof" lists field numbers of one oneof.
TIMESTAMP = {1: ("seconds", "int64", False), 2: ("nanos", "int32", False)}
LATLON = {1: ("lat", "double", False), 2: ("lon", "double", False)}
POLYGON = {1: ("vertices", LATLON, True)}
PARTY = {1: ("party_id", "string", False), 2: ("name", "string", False),
         3: ("role", "enum", False), 4: ("public_keys", "bytes", True)}
GENESIS = {1: ("origin", "string", False), 2: ("title", "string", False),
           3: ("signatories", PARTY, True), 4: ("threshold", "uint32", False),
           5: ("operator_public_key", "bytes", False),
           6: ("max_clock_skew_seconds", "uint32", False)}
REGISTER_PARTY = {1: ("party", PARTY, False)}
ADD_KEY = {1: ("party_id", "string", False), 2: ("public_key", "bytes", False)}
REVOKE_KEY = {1: ("party_id", "string", False), 2: ("public_key", "bytes", False),
              3: ("reason", "string", False)}
DEFINE_ZONE = {1: ("zone_id", "string", False), 2: ("version", "uint32", False),
               3: ("name", "string", False), 4: ("kind", "enum", False),
               5: ("boundary", POLYGON, False)}
DEFINE_COMMITMENT = {1: ("commitment_id", "string", False), 2: ("version", "uint32", False),
                     3: ("name", "string", False), 4: ("kind", "enum", False),
                     5: ("zone_ids", "string", True), 6: ("window_seconds", "uint64", False),
                     7: ("corroboration_quorum", "uint32", False),
                     8: ("effective_from", TIMESTAMP, False)}
LOCATION = {1: ("point", LATLON, False), 2: ("accuracy_m", "double", False)}
EVIDENCE = {1: ("sha256", "bytes", False), 2: ("media_type", "string", False),
            3: ("uri", "string", False)}
OBSERVATION = {1: ("observed_from", TIMESTAMP, False), 2: ("observed_until", TIMESTAMP, False),
               3: ("location", LOCATION, False), 4: ("zone_id", "string", False),
               5: ("commitment_id", "string", False), 6: ("finding", "enum", False),
               7: ("category", "enum", False), 8: ("quantity", "uint32", False),
               9: ("attributed_side", "string", False), 10: ("evidence", EVIDENCE, True),
               11: ("narrative", "string", False)}
AMENDMENT = {1: ("target_seq", "uint64", False), 2: ("target_leaf_hash", "bytes", False),
             3: ("kind", "enum", False), 4: ("correction", OBSERVATION, False),
             5: ("reason", "string", False)}
DISPUTE = {1: ("target_seq", "uint64", False), 2: ("target_leaf_hash", "bytes", False),
           3: ("reason", "string", False)}
EVENT = {1: ("agreement_id", "string", False), 2: ("author", "string", False),
         3: ("created_at", TIMESTAMP, False), 4: ("nonce", "bytes", False),
         10: ("genesis", GENESIS, False), 11: ("register_party", REGISTER_PARTY, False),
         12: ("add_key", ADD_KEY, False), 13: ("revoke_key", REVOKE_KEY, False),
         14: ("define_zone", DEFINE_ZONE, False),
         15: ("define_commitment", DEFINE_COMMITMENT, False),
         16: ("observation", OBSERVATION, False), 17: ("amendment", AMENDMENT, False),
         18: ("dispute", DISPUTE, False),
         "oneof": (10, 11, 12, 13, 14, 15, 16, 17, 18)}


def decode(buf, schema):
    """Decode a message. Unknown fields are skipped. Singular scalars: last
    value wins; singular messages: occurrences are merged (decoded from the
    concatenation); a oneof keeps its last member. Unset singular messages
    are None; unset scalars have their proto3 default."""
    oneof = schema.get("oneof", ())
    scalars, messages, repeated = {}, {}, {}
    for num, wt, v in _fields(buf):
        spec = schema.get(num)
        if spec is None:
            continue
        name, kind, rep = spec
        if isinstance(kind, dict):
            if wt != 2:
                raise DecodeError("wire type %d for message field %s" % (wt, name))
            if rep:
                repeated.setdefault(name, []).append(decode(v, kind))
            else:
                if num in oneof:
                    for other in oneof:
                        if other != num:
                            messages.pop(schema[other][0], None)
                messages.setdefault(name, []).append(bytes(v))
            continue
        want, conv = _SCALARS[kind]
        if rep:
            if wt == want:
                repeated.setdefault(name, []).append(conv(v))
            elif wt == 2 and want != 2:  # packed
                raise DecodeError("packed repeated field %s not expected" % name)
            else:
                raise DecodeError("wire type %d for field %s" % (wt, name))
        else:
            if wt != want:
                raise DecodeError("wire type %d for field %s" % (wt, name))
            scalars[name] = conv(v)
    out = {}
    for num, spec in schema.items():
        if num == "oneof":
            continue
        name, kind, rep = spec
        if rep:
            out[name] = repeated.get(name, [])
        elif isinstance(kind, dict):
            parts = messages.get(name)
            out[name] = decode(b"".join(parts), kind) if parts is not None else None
        else:
            out[name] = scalars.get(name, _DEFAULTS[kind])
    body = [schema[n][0] for n in oneof if out.get(schema[n][0]) is not None]
    if oneof:
        out["body"] = body[0] if body else None
    return out


def micros(ts):
    """Section 9.1: seconds * 1_000_000 + nanos div 1000. An unset Timestamp
    is taken as the proto3 default (0, 0)."""
    if ts is None:
        return 0
    return ts["seconds"] * 1_000_000 + ts["nanos"] // 1000


# ---------------------------------------------------------------------------
# Section 3: leaves

LEAF_TAG = b"ceasefire-ledger:leaf:v1\n"
EVENT_TAG = b"ceasefire-ledger:event:v1\n"


class LeafError(Exception):
    pass


def parse_leaf(leaf, expect_seq, prev_hash, prev_received_at):
    if len(LEAF_TAG) != 25:
        raise AssertionError
    i = 0

    def take(n):
        nonlocal i
        if i + n > len(leaf):
            raise LeafError("leaf truncated")
        b = leaf[i:i + n]
        i += n
        return b

    if take(25) != LEAF_TAG:
        raise LeafError("bad leaf tag")
    seq = struct.unpack(">Q", take(8))[0]
    prev = take(32)
    received_at = struct.unpack(">q", take(8))[0]
    payload_len = struct.unpack(">I", take(4))[0]
    if payload_len > 32768:
        raise LeafError("payload_len %d > 32768" % payload_len)
    payload = take(payload_len)
    sig_count = take(1)[0]
    if not 1 <= sig_count <= 32:
        raise LeafError("sig_count %d" % sig_count)
    sigs = [(take(32), take(64)) for _ in range(sig_count)]
    if i != len(leaf):
        raise LeafError("%d trailing bytes" % (len(leaf) - i))
    if seq != expect_seq:
        raise LeafError("seq %d at position %d" % (seq, expect_seq))
    if prev != prev_hash:
        raise LeafError("prev_leaf_hash does not chain")
    if prev_received_at is not None and received_at < prev_received_at:
        raise LeafError("received_at decreases")
    for (k1, _), (k2, _) in zip(sigs, sigs[1:]):
        if not k1 < k2:
            raise LeafError("signatures not strictly ascending by public key")
    for pk, sig in sigs:
        if not ed25519_verify_strict(pk, EVENT_TAG + payload, sig):
            raise LeafError("signature by %s does not verify" % pk.hex())
    return seq, received_at, payload, sigs


def leaf_hash(leaf):
    return hashlib.sha256(b"\x00" + leaf).digest()


# ---------------------------------------------------------------------------
# Section 7 (as needed by 9.2): polygon containment, planar on (lon, lat),
# boundary inclusive, exactly as section 7 "Geometry" computes it in IEEE
# 754 binary64 (Python floats; every operation rounded, in the order
# written).

def cross(o, a, b):
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def on_segment(a, b, p):
    return (cross(a, b, p) == 0.0
            and min(a[0], b[0]) <= p[0] <= max(a[0], b[0])
            and min(a[1], b[1]) <= p[1] <= max(a[1], b[1]))


def contains(vertices, lat, lon):
    p = (lon, lat)
    pts = [(v["lon"], v["lat"]) for v in vertices]
    n = len(pts)
    inside = False
    for k in range(n):
        a, b = pts[k], pts[(k + 1) % n]
        if on_segment(a, b, p):
            return True
        if (a[1] > p[1]) != (b[1] > p[1]):
            crossing_lon = a[0] + ((p[1] - a[1]) / (b[1] - a[1])) * (b[0] - a[0])
            if p[0] < crossing_lon:
                inside = not inside
    return inside


# ---------------------------------------------------------------------------
# Section 9: the projection

UNSPECIFIED, COMPLIANT, UNOBSERVED, OBSTRUCTED, REPORTED, CONFIRMED = range(6)
VIOLATION, COMPLIANCE, ACCESS_DENIED = 1, 2, 3
RETRACT, CORRECT = 1, 2

SUMMARY_FIELDS = ("status", "disputed", "observations", "violations",
                  "counts_by_category", "distinct_reporters",
                  "distinct_violation_reporters", "last_violation_at",
                  "last_observation_at", "updated_seq")


def empty_summary(updated_seq):
    return {"status": UNSPECIFIED, "disputed": False, "observations": 0,
            "violations": 0, "counts_by_category": [], "distinct_reporters": 0,
            "distinct_violation_reporters": 0, "last_violation_at": None,
            "last_observation_at": None, "updated_seq": updated_seq}


def summary_of(window, quorum):
    """Section 9.6, from the window alone (updated_seq set by the caller)."""
    obs = list(window.values())
    viol = [o for o in obs if o["finding"] == VIOLATION]
    cats = {}
    for o in obs:
        cats[o["category"]] = cats.get(o["category"], 0) + 1
    dvr = len({o["reporter"] for o in viol})
    if not obs:
        status = UNOBSERVED
    elif viol:
        status = CONFIRMED if dvr >= quorum else REPORTED
    elif all(o["finding"] == ACCESS_DENIED for o in obs):
        status = OBSTRUCTED
    else:
        status = COMPLIANT
    return {
        "status": status,
        "disputed": any(o["disputed"] for o in viol),
        "observations": len(obs),
        "violations": len(viol),
        "counts_by_category": sorted(cats.items()),
        "distinct_reporters": len({o["reporter"] for o in obs}),
        "distinct_violation_reporters": dvr,
        "last_violation_at": max((o["observed_until"] for o in viol), default=None),
        "last_observation_at": max((o["observed_until"] for o in obs), default=None),
        "updated_seq": None,
    }


class Projection:
    def __init__(self):
        self.as_of_seq = None
        self.log_time = 0
        self.pairs = {}        # (zone_id, commitment_id) -> {"window": {}, "summary": {}}
        self.commitments = {}  # id -> {"zone_ids", "window", "quorum", "effective_from"}
        self.zones = {}        # id -> vertices (list of {"lat", "lon"})
        self.records = {}      # seq -> record (section 9.2)

    # -- the rules' state that the fold reads (section 9.2) ---------------
    def attribute_zone(self, obs):
        if obs["zone_id"]:
            return obs["zone_id"]
        c = self.commitments[obs["commitment_id"]]
        loc = obs["location"] or {}
        pt = loc.get("point") or {"lat": 0.0, "lon": 0.0}
        for z in c["zone_ids"]:
            if contains(self.zones[z], pt["lat"], pt["lon"]):
                return z
        raise ValueError("observation in none of its commitment's zones (invalid log)")

    def make_record(self, author, obs):
        return {"author": author, "zone_id": self.attribute_zone(obs),
                "commitment_id": obs["commitment_id"],
                "observed_until": micros(obs["observed_until"]), "retracted": False}

    # -- section 9.4 ---------------------------------------------------------
    def window_of(self, commitment_id):
        return self.commitments[commitment_id]["window"]

    def count(self, t, r, finding, category, disputed):
        c = self.commitments[r["commitment_id"]]
        if r["observed_until"] < c["effective_from"]:
            return
        if r["observed_until"] + c["window"] < self.log_time:
            return
        self.pairs[(r["zone_id"], r["commitment_id"])]["window"][t] = {
            "observed_until": r["observed_until"], "reporter": r["author"],
            "finding": finding, "category": category, "disputed": disputed}

    def uncount(self, t, r):
        pair = self.pairs.get((r["zone_id"], r["commitment_id"]))
        if pair is None or t not in pair["window"]:
            return False
        return pair["window"].pop(t)["disputed"]

    def expire(self):
        for key, pair in self.pairs.items():
            w = self.window_of(key[1])
            for t in [t for t, o in pair["window"].items()
                      if o["observed_until"] + w < self.log_time]:
                del pair["window"][t]

    def fold(self, s, received_at, ev):
        self.log_time = max(self.log_time, received_at)               # step 1
        previous = {k: p["summary"] for k, p in self.pairs.items()}
        created, dropped = set(), set()
        body = ev["body"]
        b = ev[body] if body else None

        # Rules' state (applied before the fold, section 9.2).
        if body == "define_zone":
            self.zones[b["zone_id"]] = (b["boundary"] or {"vertices": []})["vertices"]
        elif body == "define_commitment":
            self.commitments[b["commitment_id"]] = {
                "zone_ids": list(b["zone_ids"]),
                "window": b["window_seconds"] * 1_000_000,
                "quorum": b["corroboration_quorum"],
                "effective_from": micros(b["effective_from"]),
            }

        if body == "define_commitment":                              # step 2
            cid = b["commitment_id"]
            c = self.commitments[cid]
            for key in [k for k in self.pairs if k[1] == cid and k[0] not in c["zone_ids"]]:
                del self.pairs[key]
                dropped.add(key)
            for z in c["zone_ids"]:
                if (z, cid) not in self.pairs:
                    self.pairs[(z, cid)] = {"window": {}, "summary": None}
                    created.add((z, cid))
        elif body == "observation":
            self.records[s] = self.make_record(ev["author"], b)
            self.count(s, self.records[s], b["finding"], b["category"], False)
        elif body == "amendment":
            t = b["target_seq"]
            old = self.records[t]
            if b["kind"] == RETRACT:
                new = dict(old, retracted=True)
            elif b["kind"] == CORRECT:
                new = self.make_record(old["author"], b["correction"])
            else:
                raise ValueError("amendment kind %d (invalid log)" % b["kind"])
            self.records[t] = new
            was_disputed = self.uncount(t, old)
            if b["kind"] == CORRECT:
                self.count(t, new, b["correction"]["finding"],
                           b["correction"]["category"], was_disputed)
        elif body == "dispute":
            r = self.records[b["target_seq"]]
            pair = self.pairs.get((r["zone_id"], r["commitment_id"]))
            if pair is not None and b["target_seq"] in pair["window"]:
                pair["window"][b["target_seq"]]["disputed"] = True

        self.expire()                                                 # step 3
        self.as_of_seq = s
        return self.summarise(s, previous, created, dropped)          # step 4

    # -- section 9.7 ---------------------------------------------------------
    def summarise(self, s, previous, created, dropped):
        changes = []

        def emit(key, old_status, new_status, old_disp, new_disp, pair):
            changes.append({"seq": s, "index": len(changes), "zone_id": key[0],
                            "commitment_id": key[1], "old_status": old_status,
                            "new_status": new_status, "old_disputed": old_disp,
                            "new_disputed": new_disp, "pair": dict(pair)})

        for key in sorted(set(previous) | set(self.pairs)):
            if key in dropped:
                old = previous[key]
                emit(key, old["status"], UNSPECIFIED, old["disputed"], False, empty_summary(s))
                continue
            new = summary_of(self.pairs[key]["window"], self.commitments[key[1]]["quorum"])
            if key in created:
                new["updated_seq"] = s
                emit(key, UNSPECIFIED, new["status"], False, new["disputed"], new)
            else:
                old = previous[key]
                differs = any(new[f] != old[f] for f in SUMMARY_FIELDS if f != "updated_seq")
                new["updated_seq"] = s if differs else old["updated_seq"]
                if new["status"] != old["status"] or new["disputed"] != old["disputed"]:
                    emit(key, old["status"], new["status"], old["disputed"], new["disputed"], new)
            self.pairs[key]["summary"] = new
        return changes

    # -- section 9.9 ---------------------------------------------------------
    def digest(self):
        none = -(2**63)
        out = [b"ceasefire-ledger:projection:v1\n",
               struct.pack(">Q", 2**64 - 1 if self.as_of_seq is None else self.as_of_seq),
               struct.pack(">q", self.log_time),
               struct.pack(">Q", len(self.pairs))]
        for (z, c) in sorted(self.pairs):
            sm = self.pairs[(z, c)]["summary"]
            zb, cb = z.encode("utf-8"), c.encode("utf-8")
            out += [bytes([len(zb)]), zb, bytes([len(cb)]), cb,
                    struct.pack(">iB", sm["status"], 1 if sm["disputed"] else 0),
                    struct.pack(">IIII", sm["observations"], sm["violations"],
                                sm["distinct_reporters"], sm["distinct_violation_reporters"]),
                    struct.pack(">qq",
                                none if sm["last_violation_at"] is None else sm["last_violation_at"],
                                none if sm["last_observation_at"] is None else sm["last_observation_at"]),
                    struct.pack(">Q", sm["updated_seq"]),
                    struct.pack(">I", len(sm["counts_by_category"]))]
            for cat, n in sm["counts_by_category"]:
                out.append(struct.pack(">iI", cat, n))
        return hashlib.sha256(b"".join(out)).hexdigest()

    # -- section 9.8 ---------------------------------------------------------
    def rollups(self):
        zones, commitments = {}, {}
        for (z, c), p in self.pairs.items():
            st = p["summary"]["status"]
            zones[z] = max(zones.get(z, 0), st)
            by = commitments.setdefault(c, {})
            by[st] = by.get(st, 0) + 1
        return ([{"zone_id": z, "status": zones[z]} for z in sorted(zones)],
                [{"commitment_id": c,
                  "zones_by_status": [{"status": st, "zones": n}
                                      for st, n in sorted(commitments[c].items())]}
                 for c in sorted(commitments)])


# ---------------------------------------------------------------------------
# Vector layout (section 9.10)

def summary_json(sm, key=None):
    d = {}
    if key is not None:
        d["zone_id"], d["commitment_id"] = key
    d.update({
        "status": sm["status"], "disputed": sm["disputed"],
        "observations": sm["observations"], "violations": sm["violations"],
        "counts_by_category": [{"category": c, "count": n} for c, n in sm["counts_by_category"]],
        "distinct_reporters": sm["distinct_reporters"],
        "distinct_violation_reporters": sm["distinct_violation_reporters"],
        "last_violation_at_micros": sm["last_violation_at"],
        "last_observation_at_micros": sm["last_observation_at"],
        "updated_seq": sm["updated_seq"],
    })
    return d


def change_json(ch):
    d = {k: ch[k] for k in ("seq", "index", "zone_id", "commitment_id", "old_status",
                            "new_status", "old_disputed", "new_disputed")}
    d["pair"] = summary_json(ch["pair"])
    return d


def _diff(label, got, want, errors):
    if got != want:
        errors.append("%s: got %s, want %s" % (label, json.dumps(got, sort_keys=True),
                                              json.dumps(want, sort_keys=True)))


def check_vector(path):
    with open(path) as f:
        vec = json.load(f)
    errors = []
    for p in vec.get("parties", []):
        if "seed" in p and "public_key" in p:
            _diff("party %s public key" % p.get("party_id"),
                  ed25519_public_key(bytes.fromhex(p["seed"])).hex(), p["public_key"], errors)
    proj = Projection()
    empty = vec["empty"]
    _diff("empty digest", proj.digest(), empty["digest"], errors)
    _diff("empty log_time", proj.log_time, empty["log_time_micros"], errors)
    _diff("empty as_of_seq", proj.as_of_seq, empty["as_of_seq"], errors)
    states = {s["as_of_seq"]: s for s in vec["states"]}
    prev_hash, prev_recv = b"\x00" * 32, None
    n_changes = 0
    for pos, entry in enumerate(vec["entries"]):
        leaf = bytes.fromhex(entry["leaf"])
        try:
            seq, received_at, payload, _ = parse_leaf(leaf, pos, prev_hash, prev_recv)
            ev = decode(payload, EVENT)
        except (LeafError, DecodeError, UnicodeDecodeError) as e:
            errors.append("entry %d: %s" % (pos, e))
            break
        h = leaf_hash(leaf)
        _diff("entry %d leaf_hash" % pos, h.hex(), entry["leaf_hash"], errors)
        _diff("entry %d seq" % pos, seq, entry["seq"], errors)
        _diff("entry %d received_at" % pos, received_at, entry["received_at_micros"], errors)
        if (pos == 0) != (ev["body"] == "genesis"):
            errors.append("entry %d: genesis must be exactly entry 0" % pos)
        if pos == 0 and ev["body"] == "genesis":
            want_op = ed25519_public_key(b"\x0f" * 32)
            _diff("genesis operator key", ev["genesis"]["operator_public_key"].hex(),
                  want_op.hex(), errors)
        prev_hash, prev_recv = h, received_at

        changes = proj.fold(seq, received_at, ev)
        n_changes += len(changes)
        _diff("entry %d changes" % pos, [change_json(c) for c in changes], entry["changes"], errors)
        _diff("entry %d log_time" % pos, proj.log_time, entry["log_time_micros"], errors)
        _diff("entry %d digest" % pos, proj.digest(), entry["digest"], errors)

        st = states.pop(seq, None)
        if st is not None:
            _diff("state %d as_of_seq" % seq, proj.as_of_seq, st["as_of_seq"], errors)
            _diff("state %d log_time" % seq, proj.log_time, st["log_time_micros"], errors)
            _diff("state %d digest" % seq, proj.digest(), st["digest"], errors)
            _diff("state %d pairs" % seq,
                  [summary_json(proj.pairs[k]["summary"], k) for k in sorted(proj.pairs)],
                  st["pairs"], errors)
            zones, commitments = proj.rollups()
            _diff("state %d zones" % seq, zones, st["zones"], errors)
            _diff("state %d commitments" % seq, commitments, st["commitments"], errors)
    if states:
        errors.append("states for seqs never reached: %s" % sorted(states))
    if vec["entries"] and vec["states"] and vec["states"][-1]["as_of_seq"] != vec["entries"][-1]["seq"]:
        errors.append("no state after the last entry")
    return errors, len(vec["entries"]), n_changes, len(vec["states"])


def main(argv):
    if len(argv) != 2:
        print("usage: python3 tests/independent/projection.py testdata/projection", file=sys.stderr)
        return 2
    d = argv[1]
    files = sorted(f for f in os.listdir(d) if f.endswith(".json"))
    passed = failed = 0
    for name in files:
        try:
            errors, n_entries, n_changes, n_states = check_vector(os.path.join(d, name))
        except Exception as e:  # a crash is a failure of that vector
            errors, n_entries, n_changes, n_states = ["%s: %s" % (type(e).__name__, e)], 0, 0, 0
        if errors:
            failed += 1
            print("FAIL %s (%d problems)" % (name, len(errors)))
            for e in errors[:20]:
                print("    " + e)
        else:
            passed += 1
            print("ok   %s: %d entries, %d changes, %d states" % (name, n_entries, n_changes, n_states))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
