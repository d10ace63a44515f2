"""CSV and JSON files holding every figure of a run."""
import csv
import json
import math
import os

from .sweep import FIELDS


def _clean(v):
    # JSON has no NaN or infinity; an absent figure is null
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _parent(path):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)


def write_csv(path, rows):
    _parent(path)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if _clean(row[k]) is None else row[k] for k in FIELDS})


def payload(env, machine, options, rows, compare=None):
    data = {
        "env": env,
        "machine": machine.as_dict(),
        "options": options,
        "fields": list(FIELDS),
        "rows": [{k: _clean(row[k]) for k in FIELDS} for row in rows],
    }
    if compare is not None:
        data["compare"] = compare
    return data


def write_json(path, data):
    _parent(path)
    with open(path, "w") as f:
        json.dump(data, f, indent=1, allow_nan=False)
        f.write("\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)
