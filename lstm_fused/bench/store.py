"""Stored runs: --label NAME saves a run under the results directory, --compare NAME
sets the current run against it."""
import os
import re

from .export import read_json, write_json

LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
KEY = ("device", "dtype", "mode", "T", "B", "I", "H", "layers", "bidirectional", "proj", "contender")


def valid_label(label):
    return bool(LABEL_RE.match(label))


def path_of(results_dir, label):
    return os.path.join(results_dir, f"{label}.json")


def save(results_dir, label, data):
    path = path_of(results_dir, label)
    write_json(path, data)
    return path


def load(results_dir, label):
    return read_json(path_of(results_dir, label))


def compare(rows, stored):
    """Rows of this run found in the stored one, with stored median / current median."""
    old = {tuple(r[k] for k in KEY): r for r in stored["rows"]}
    out = []
    for row in rows:
        before = old.get(tuple(row[k] for k in KEY))
        if before is None or not before.get("median_us") or not row["median_us"]:
            continue
        out.append({"row": row, "stored_us": before["median_us"], "ratio": before["median_us"] / row["median_us"]})
    return out
