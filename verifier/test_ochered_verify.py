"""Tests of the independent verifier: every shared vector's verdict, and the command line on
files written from the vectors. Run: python3 -m unittest discover -s verifier -v"""

import contextlib
import copy
import io
import json
import os
import tempfile
import unittest

import ochered_verify as v

HERE = os.path.dirname(os.path.abspath(__file__))


def load_vectors():
    with open(os.path.join(HERE, "vectors.json"), encoding="utf-8") as f:
        return json.load(f)


class VectorsTest(unittest.TestCase):
    def test_every_verdict_agrees_with_the_rust_verifiers(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = v.run_vectors(os.path.join(HERE, "vectors.json"))
        self.assertEqual(code, 0, out.getvalue())
        self.assertIn("all verdicts agree", out.getvalue())

    def test_the_vectors_hold_valid_and_invalid_cases(self):
        vectors = load_vectors()
        verdicts = [c["valid"] for c in vectors["receipts"] + vectors["heads"]]
        self.assertGreaterEqual(verdicts.count(True), 8)
        self.assertGreaterEqual(verdicts.count(False), 20)


class CommandLineTest(unittest.TestCase):
    def setUp(self):
        self.vectors = load_vectors()
        self.dir = tempfile.TemporaryDirectory()
        self.key = self.write("key.pub", self.vectors["public_key"] + "\n")

    def tearDown(self):
        self.dir.cleanup()

    def write(self, name, text):
        path = os.path.join(self.dir.name, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def run_main(self, *args):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = v.main(list(args))
        return code, out.getvalue()

    def valid_case(self):
        return next(c for c in self.vectors["receipts"] if c["valid"] and c["proof"])

    def test_a_receipt_and_its_proof_verify_and_a_changed_number_does_not(self):
        case = self.valid_case()
        proof = self.write("proof.json", json.dumps(case["proof"]))
        receipt = self.write("receipt.json", json.dumps(case["receipt"]))
        code, out = self.run_main("receipt", "--receipt", receipt, "--proof", proof,
                                  "--public-key", self.key)
        self.assertEqual(code, 0, out)
        self.assertIn("included in the tree of", out)
        changed = copy.deepcopy(case["receipt"])
        changed["number"] += 1
        receipt = self.write("changed.json", json.dumps(changed))
        code, out = self.run_main("receipt", "--receipt", receipt, "--proof", proof,
                                  "--public-key", self.key)
        self.assertEqual(code, 1, out)
        self.assertIn("signature does not match", out)

    def test_a_heads_file_verifies_and_a_fork_between_two_files_is_found(self):
        honest = next(c for c in self.vectors["heads"] if c["valid"])["heads"]
        lines = "".join(json.dumps(h) + "\n" for h in honest)
        mirror = self.write("mirror.jsonl", lines)
        code, out = self.run_main("heads", "--public-key", self.key, mirror)
        self.assertEqual(code, 0, out)
        forked = next(c for c in self.vectors["heads"] if "another root" in c["name"])
        other = self.write("other.jsonl", json.dumps(forked["heads"][-1]) + "\n")
        code, out = self.run_main("heads", "--public-key", self.key, mirror, other)
        self.assertEqual(code, 1, out)
        self.assertIn("FORK", out)

    def test_unreadable_input_is_exit_2(self):
        bad = self.write("bad.json", "{")
        code, _ = self.run_main("receipt", "--receipt", bad, "--public-key", self.key)
        self.assertEqual(code, 2)


if __name__ == "__main__":
    unittest.main()
