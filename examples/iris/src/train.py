"""Fit a logistic regression on the features."""

import os
import pickle

import repro
from params import load
from sklearn.linear_model import LogisticRegression

seed = repro.seed_everything()
p = load()["train"]
with open("data/features/train.pkl", "rb") as f:
    x, y = pickle.load(f)
model = LogisticRegression(C=p["C"], max_iter=p["max_iter"], random_state=seed).fit(x, y)
os.makedirs("model", exist_ok=True)
with open("model/model.pkl", "wb") as f:
    pickle.dump(model, f, protocol=4)
print(f"train: C={p['C']}, train accuracy {model.score(x, y):.3f}")
