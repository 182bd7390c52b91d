"""Split the raw iris table into train and test sets (stratified, seeded by repro)."""

import csv
import json
import os
import random

import repro

seed = repro.seed_everything()
from params import load  # noqa: E402

test_size = load()["prepare"]["test_size"]

with open("data/iris.csv") as f:
    rows = list(csv.DictReader(f))
by_class: dict[str, list[dict]] = {}
for r in rows:
    by_class.setdefault(r["species"], []).append(r)
train, test = [], []
rng = random.Random(seed)
for species in sorted(by_class):
    items = by_class[species]
    rng.shuffle(items)
    k = round(len(items) * test_size)
    test += items[:k]
    train += items[k:]
os.makedirs("data/prepared", exist_ok=True)
for name, part in (("train", train), ("test", test)):
    with open(f"data/prepared/{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(part)
print(f"prepare: {len(train)} train rows, {len(test)} test rows (seed {seed})")
