"""Score the model on the test set and write metrics.json."""

import json
import pickle

from sklearn.metrics import accuracy_score, f1_score

with open("model/model.pkl", "rb") as f:
    model = pickle.load(f)
with open("data/features/test.pkl", "rb") as f:
    x, y = pickle.load(f)
pred = model.predict(x)
metrics = {"accuracy": round(float(accuracy_score(y, pred)), 4),
           "f1_macro": round(float(f1_score(y, pred, average="macro")), 4)}
with open("metrics.json", "w") as f:
    json.dump(metrics, f, indent=2, sort_keys=True)
print(f"evaluate: {metrics}")
