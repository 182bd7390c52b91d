"""Read params.yaml (a tiny reader for the flat two-level file this example uses, so the example
needs nothing beyond scikit-learn)."""

import ast


def load(path: str = "params.yaml") -> dict:
    out: dict = {}
    section = None
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].rstrip()
            if not line.strip():
                continue
            key, _, value = line.strip().partition(":")
            if not line.startswith(" "):
                section = out.setdefault(key, {})
            elif section is not None:
                section[key] = ast.literal_eval(value.strip())
    return out
