"""Standardize the four measurements and add polynomial features of the configured degree."""

import csv
import os
import pickle

import numpy as np
from params import load
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

degree = load()["featurize"]["degree"]


def read(name):
    with open(f"data/prepared/{name}.csv") as f:
        rows = list(csv.DictReader(f))
    x = np.array([[float(r[k]) for k in list(r)[:4]] for r in rows])
    y = np.array([r["species"] for r in rows])
    return x, y


x_train, y_train = read("train")
x_test, y_test = read("test")
scaler = StandardScaler().fit(x_train)
poly = PolynomialFeatures(degree=degree, include_bias=False).fit(scaler.transform(x_train))
os.makedirs("data/features", exist_ok=True)
for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
    feats = poly.transform(scaler.transform(x))
    with open(f"data/features/{name}.pkl", "wb") as f:
        pickle.dump((feats, y), f, protocol=4)
print(f"featurize: {feats.shape[1]} features (degree {degree})")
