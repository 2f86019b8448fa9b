#!/usr/bin/env python3
"""An independent verifier of ochered's receipts, inclusion proofs and signed tree heads.

Written from docs/TRANSPARENCY.md and RFC 9162 (sections 2.1.3.2 and 2.1.4.2), with no code
of ochered: the Python standard library plus an Ed25519 package (PyNaCl, or `cryptography`).

    python3 ochered_verify.py receipt --receipt R.json [--proof P.json] --public-key KEY
    python3 ochered_verify.py heads --public-key KEY HEADS_FILE [HEADS_FILE ...]
    python3 ochered_verify.py vectors vectors.json

Exit status: 0 verified, 1 not verified (the reason is printed), 2 unreadable input,
3 no Ed25519 package.
"""

import argparse
import datetime
import hashlib
import json
import re
import struct
import sys

RECEIPT_FORMAT = "ochered-receipt-v2"
RECEIPT_FORMAT_V1 = "ochered-receipt-v1"
RECEIPT_BATCH_FORMAT = "ochered-receipt-batch-v2"
TREE_HEAD_FORMAT = "ochered-tree-head-v1"
INCLUSION_PROOF_FORMAT = "ochered-inclusion-proof-v1"

HASH_HEX = re.compile(r"^[0-9a-f]{64}$")
SIGNATURE_HEX = re.compile(r"^[0-9a-f]{128}$")


class Invalid(Exception):
    """The input is well formed but does not verify."""


class Unreadable(Exception):
    """The input is not what it claims to be."""


def _ed25519_verifier():
    try:
        import nacl.exceptions
        import nacl.signing

        def verify(public_key, message, signature):
            try:
                nacl.signing.VerifyKey(public_key).verify(message, signature)
                return True
            except nacl.exceptions.BadSignatureError:
                return False

        return verify
    except ImportError:
        pass
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        def verify(public_key, message, signature):
            try:
                Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
                return True
            except InvalidSignature:
                return False

        return verify
    except ImportError:
        return None


ED25519_VERIFY = _ed25519_verifier()


# --- Signed bytes -------------------------------------------------------------------------


def framed(fields):
    """Each field: its UTF-8 length as an unsigned 64-bit little-endian integer, then its bytes."""
    out = bytearray()
    for field in fields:
        data = field.encode("utf-8")
        out += struct.pack("<Q", len(data))
        out += data
    return bytes(out)


def check_signature(public_key, fields, signature_hex, what):
    if not isinstance(signature_hex, str) or not SIGNATURE_HEX.match(signature_hex):
        raise Invalid(f"the {what}'s signature does not match")
    if not ED25519_VERIFY(public_key, framed(fields), bytes.fromhex(signature_hex)):
        raise Invalid(f"the {what}'s signature does not match")


# --- Field checks -------------------------------------------------------------------------


def require_object(value, keys, what):
    if not isinstance(value, dict) or set(value) != set(keys):
        raise Unreadable(f"{what} must be an object with exactly the fields {sorted(keys)}")


def require_int(value, what):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >= 2**64:
        raise Unreadable(f"{what} must be an unsigned integer")
    return value


def require_str(value, what):
    if not isinstance(value, str):
        raise Unreadable(f"{what} must be a string")
    return value


def require_hash(value, what):
    if not isinstance(value, str) or not HASH_HEX.match(value):
        raise Invalid(f"{what} must be 64 lower-case hex characters")
    return bytes.fromhex(value)


# --- RFC 6962 / RFC 9162 hashing and proof verification ------------------------------------


def leaf_hash(event_hash):
    return hashlib.sha256(b"\x00" + event_hash).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def tree_root(event_hashes):
    """MTH of the event hashes (RFC 6962 section 2.1), for testing the hashing on its own."""
    n = len(event_hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hash(event_hashes[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(tree_root(event_hashes[:k]), tree_root(event_hashes[k:]))


def verify_inclusion(event_hash, leaf_index, tree_size, root, path):
    """RFC 9162 section 2.1.3.2."""
    if leaf_index >= tree_size:
        return False
    fn, sn = leaf_index, tree_size - 1
    r = leaf_hash(event_hash)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, first_hash, second, second_hash, path):
    """RFC 9162 section 2.1.4.2; equal sizes need equal roots and an empty path."""
    if first == 0 or first > second:
        return False
    if first == second:
        return not path and first_hash == second_hash
    path = list(path)
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


# --- Documents ----------------------------------------------------------------------------

RECEIPT_KEYS_V1 = ["format", "authority", "service", "number", "registered_at", "time_zone",
                   "authority_seq", "event_hash", "public_key", "signature"]
RECEIPT_KEYS = RECEIPT_KEYS_V1 + ["batch"]
BATCH_KEYS = ["size", "index", "root", "path"]
HEAD_KEYS = ["format", "authority", "tree_size", "root_hash", "signed_at", "public_key",
             "signature"]
PROOF_KEYS = ["format", "authority", "leaf_index", "event_hash", "tree_head", "audit_path"]


def verify_head(head, public_key):
    """Returns (authority, tree_size, root) of a head whose signature holds."""
    require_object(head, HEAD_KEYS, "a tree head")
    if head["format"] != TREE_HEAD_FORMAT:
        raise Unreadable(f"unknown tree head format {head['format']!r}")
    authority = require_str(head["authority"], "authority")
    size = require_int(head["tree_size"], "tree_size")
    root = require_hash(head["root_hash"], "the head's root_hash")
    check_signature(public_key, [head["format"], authority, str(size), head["root_hash"],
                                 require_str(head["signed_at"], "signed_at")],
                    head["signature"], "tree head")
    if size == 0:
        raise Invalid("a signed tree head has at least one event")
    return authority, size, root


def verify_receipt(receipt, proof, public_key):
    """Checks a receipt and, if given, its inclusion proof. Returns a sentence on success."""
    if not isinstance(receipt, dict) or receipt.get("format") not in (RECEIPT_FORMAT,
                                                                       RECEIPT_FORMAT_V1):
        raise Unreadable("unknown receipt format "
                         f"{receipt.get('format') if isinstance(receipt, dict) else None!r}")
    v1 = receipt["format"] == RECEIPT_FORMAT_V1
    require_object(receipt, RECEIPT_KEYS_V1 if v1 else RECEIPT_KEYS, "a receipt")
    for name in ["authority", "service", "registered_at", "time_zone", "event_hash",
                 "signature"]:
        require_str(receipt[name], name)
    number = require_int(receipt["number"], "number")
    seq = require_int(receipt["authority_seq"], "authority_seq")
    statement = [receipt["format"], receipt["authority"], receipt["service"], str(number),
                 receipt["registered_at"], receipt["time_zone"], str(seq),
                 receipt["event_hash"]]
    if v1:
        # v1: the signature covers the statement itself.
        check_signature(public_key, statement, receipt["signature"], "receipt")
    else:
        # v2: the statement's SHA-256 is leaf `index` of the batch's RFC 6962 tree, whose
        # size and root the signature covers.
        batch = receipt["batch"]
        require_object(batch, BATCH_KEYS, "a receipt's batch")
        size = require_int(batch["size"], "batch size")
        index = require_int(batch["index"], "batch index")
        root = require_hash(batch["root"], "the receipt's batch root")
        if not isinstance(batch["path"], list):
            raise Unreadable("the batch path must be a list")
        path = [require_hash(node, "each batch path node") for node in batch["path"]]
        check_signature(public_key, [RECEIPT_BATCH_FORMAT, str(size), batch["root"]],
                        receipt["signature"], "receipt")
        digest = hashlib.sha256(framed(statement)).digest()
        if not verify_inclusion(digest, index, size, root, path):
            raise Invalid("the receipt's signature does not match: its fields are not at its "
                          "place in the signed batch")
    event_hash = require_hash(receipt["event_hash"], "the receipt's event_hash")
    try:
        datetime.datetime.fromisoformat(receipt["registered_at"])
    except ValueError:
        raise Invalid("the receipt's registered_at is not an RFC 3339 time")
    if seq == 0:
        raise Invalid("the receipt's authority_seq starts at 1")
    said = (f"{receipt['service']} {number} of {receipt['authority']}, registered "
            f"{receipt['registered_at']} ({receipt['time_zone']}), is event {seq}")
    if proof is None:
        return said + " (signed receipt; no inclusion proof given)"

    require_object(proof, PROOF_KEYS, "an inclusion proof")
    if proof["format"] != INCLUSION_PROOF_FORMAT:
        raise Unreadable(f"unknown inclusion proof format {proof['format']!r}")
    authority, size, root = verify_head(proof["tree_head"], public_key)
    if proof["authority"] != authority:
        raise Invalid("the proof's authority is not its head's")
    index = require_int(proof["leaf_index"], "leaf_index")
    proof_hash = require_hash(proof["event_hash"], "the proof's event_hash")
    if not isinstance(proof["audit_path"], list):
        raise Unreadable("audit_path must be a list")
    path = [require_hash(node, "each audit_path node") for node in proof["audit_path"]]
    if not verify_inclusion(proof_hash, index, size, root, path):
        raise Invalid(f"the inclusion proof fails: the event is not at leaf {index} of the "
                      f"tree of size {size}")
    if proof["authority"] != receipt["authority"]:
        raise Invalid("the receipt and the proof are for different authorities")
    if index + 1 != seq:
        raise Invalid(f"the receipt is for event {seq} but the proof for leaf {index}")
    if proof_hash != event_hash:
        raise Invalid("the receipt's and the proof's event hashes differ")
    return (said + f", included in the tree of {size} events signed at "
            f"{proof['tree_head']['signed_at']}")


def audit_heads(files, public_key):
    """files: [(source, [published head, ...])]. Returns a list of problems (empty: all good)."""
    problems = []
    by_size = {}
    verified = []
    for source, heads in files:
        for i, published in enumerate(heads, 1):
            try:
                if not isinstance(published, dict) or not set(published) <= {"tree_head",
                                                                              "consistency"}:
                    raise Unreadable("a published head has tree_head and maybe consistency")
                authority, size, root = verify_head(published.get("tree_head"), public_key)
            except (Invalid, Unreadable) as e:
                problems.append(f"{source} entry {i}: {e}")
                continue
            seen = by_size.get((authority, size))
            if seen is None:
                by_size[(authority, size)] = (root, source, i)
            elif seen[0] != root:
                problems.append(f"{source} entry {i}: FORK: {seen[1]} entry {seen[2]} has "
                                f"another root for size {size}")
            verified.append((source, i, published, authority, size, root))
    previous = {}
    for source, i, published, authority, size, root in verified:
        proved_from = None
        consistency = published.get("consistency")
        if consistency is not None:
            try:
                require_object(consistency, ["from_size", "path"], "consistency")
                from_size = require_int(consistency["from_size"], "from_size")
                if not isinstance(consistency["path"], list):
                    raise Unreadable("path must be a list")
                path = [require_hash(n, "each consistency path node")
                        for n in consistency["path"]]
            except (Invalid, Unreadable) as e:
                problems.append(f"{source} entry {i}: {e}")
            else:
                proved_from = from_size
                for (other_authority, other_size), (old_root, old_source, old_i) in \
                        by_size.items():
                    if other_authority != authority or other_size != from_size:
                        continue
                    if not verify_consistency(from_size, old_root, size, root, path):
                        problems.append(f"{source} entry {i}: the consistency proof from "
                                        f"size {from_size} fails against {old_source} "
                                        f"entry {old_i}")
        prev = previous.get((source, authority))
        if prev is not None:
            prev_size, prev_root = prev
            if size < prev_size:
                problems.append(f"{source} entry {i}: the tree shrank from {prev_size} to "
                                f"{size}")
            elif size == prev_size:
                if prev_root != root:
                    problems.append(f"{source} entry {i}: FORK: same size as the previous "
                                    f"head, another root")
            elif proved_from != prev_size:
                problems.append(f"{source} entry {i}: no consistency proof from the previous "
                                f"head's size {prev_size}")
        previous[(source, authority)] = (size, root)
    return problems


def read_heads_file(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    stripped = text.lstrip()
    if stripped.startswith("{") and '"heads"' in stripped:
        try:
            document = json.loads(text)
            if isinstance(document, dict) and set(document) == {"heads"}:
                return document["heads"]
        except ValueError:
            pass
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_public_key(path):
    with open(path, encoding="utf-8") as f:
        text = f.read().strip()
    if not HASH_HEX.match(text.lower()):
        raise Unreadable("the public key file must hold 64 hex characters")
    return bytes.fromhex(text)


# --- Commands -----------------------------------------------------------------------------


def run_vectors(path):
    """Checks every case of the shared test vectors; prints disagreements."""
    with open(path, encoding="utf-8") as f:
        vectors = json.load(f)
    public_key = bytes.fromhex(vectors["public_key"])
    disagreements = []
    tree = vectors["tree"]
    events = [bytes.fromhex(h) for h in tree["event_hashes"]]
    for k, root in enumerate(tree["roots"], 1):
        if tree_root(events[:k]).hex() != root:
            disagreements.append(f"tree root of size {k}")
    for case in vectors["receipts"]:
        try:
            verify_receipt(case["receipt"], case["proof"], public_key)
            verdict, why = True, "verifies"
        except (Invalid, Unreadable) as e:
            verdict, why = False, str(e)
        if verdict != case["valid"]:
            disagreements.append(f"receipt case {case['name']!r}: Python says {why}")
    for case in vectors["heads"]:
        problems = audit_heads([(case["name"], case["heads"])], public_key)
        if (not problems) != case["valid"]:
            disagreements.append(f"heads case {case['name']!r}: Python finds {problems}")
    n = len(vectors["receipts"]) + len(vectors["heads"]) + len(tree["roots"])
    for d in disagreements:
        print("DISAGREE:", d)
    if disagreements:
        return 1
    print(f"{n} cases: all verdicts agree")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    r = commands.add_parser("receipt", help="check a receipt and, if given, its proof")
    r.add_argument("--receipt", required=True)
    r.add_argument("--proof")
    r.add_argument("--public-key", required=True)
    h = commands.add_parser("heads", help="check heads files for signatures, consistency, forks")
    h.add_argument("--public-key", required=True)
    h.add_argument("files", nargs="+")
    v = commands.add_parser("vectors", help="check the shared test vectors")
    v.add_argument("file")
    args = parser.parse_args(argv)

    if ED25519_VERIFY is None:
        print("ochered_verify.py needs an Ed25519 package: pip install PyNaCl (or cryptography)",
              file=sys.stderr)
        return 3
    try:
        if args.command == "vectors":
            return run_vectors(args.file)
        public_key = read_public_key(args.public_key)
        if args.command == "receipt":
            with open(args.receipt, encoding="utf-8") as f:
                receipt = json.load(f)
            proof = None
            if args.proof:
                with open(args.proof, encoding="utf-8") as f:
                    proof = json.load(f)
            print("ok:", verify_receipt(receipt, proof, public_key))
            return 0
        files = [(path, read_heads_file(path)) for path in args.files]
        problems = audit_heads(files, public_key)
        for problem in problems:
            print("PROBLEM:", problem)
        if problems:
            return 1
        print(f"ok: {sum(len(heads) for _, heads in files)} heads verified")
        return 0
    except Invalid as e:
        print("NOT VERIFIED:", e)
        return 1
    except (Unreadable, ValueError, OSError) as e:
        print("error:", e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
