"""Small wrong results of issue 10, item 8: each reproduced through the CLI, now right."""

from __future__ import annotations

import json
from pathlib import Path

from repro.schema import csv_schema
from tests.conftest import write


def _states(cli) -> dict[str, dict]:
    return {s["name"]: s for s in cli("status", "--json", ok=True).json()["stages"]}


def test_frozen_stage_that_never_ran_is_new_and_runs_once(project, cli) -> None:
    write(project.root, "in.txt", "1")
    write(
        project.root,
        "repro.yaml",
        "stages:\n  s:\n    cmd: cp in.txt out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n"
        "    frozen: true\n",
    )
    st = _states(cli)["s"]
    assert st["state"] == "stale" and st["reasons"] == [{"kind": "new", "target": "s"}]
    assert cli("status", "--exit-code").code == 1
    r = cli("run", "--json", ok=True).json()
    assert [x["status"] for x in r["stages"]] == ["ran"]
    assert Path(project.root, "out.txt").read_text() == "1"
    # From now on frozen keeps that result: a changed dependency does not rerun it.
    write(project.root, "in.txt", "2")
    assert _states(cli)["s"]["state"] == "up-to-date"
    r = cli("run", "--json", ok=True).json()
    assert [x["status"] for x in r["stages"]] == ["up-to-date"]
    assert Path(project.root, "out.txt").read_text() == "1"


def test_tsv_schema_is_read_with_tabs(tmp_path) -> None:
    p = write(tmp_path, "t.tsv", "name\tage\tnote\nbob\t3\thi, there\nann\t4\tx\n")
    assert csv_schema(str(p)) == [["name", "str"], ["age", "int"], ["note", "str"]]
    # Sniffed, not taken from the extension: a semicolon file named .csv.
    p = write(tmp_path, "eu.csv", "a;b\n1;2,5\n3;4,0\n")
    assert [c[0] for c in csv_schema(str(p))] == ["a", "b"]


def test_tsv_row_change_is_values_changed_not_schema(project, cli) -> None:
    write(project.root, "data.tsv", "id\tscore\n1\t0.5\n2\t0.7\n")
    cli("add", "data.tsv", ok=True)
    first = cli("log", "--json", ok=True).json()[0]["snapshot"]
    shown = cli("show", first, "--json", ok=True).json()
    assert shown["schemas"]["data.tsv"] == [["id", "int"], ["score", "float"]]
    write(project.root, "data.tsv", "id\tscore\n1\t0.5\n2\t0.9\n")
    cli("add", "data.tsv", ok=True)
    second = cli("log", "--json", ok=True).json()[0]["snapshot"]
    out = cli("diff", first, second, ok=True).out
    assert "values changed" in out and "schema changed" not in out
    write(project.root, "data.tsv", "id\tscore\tgrade\n1\t0.5\tA\n2\t0.9\tB\n")
    cli("add", "data.tsv", ok=True)
    third = cli("log", "--json", ok=True).json()[0]["snapshot"]
    assert "schema changed" in cli("diff", second, third, ok=True).out


def test_stage_add_comma_params_and_unknown_key(project, cli) -> None:
    write(project.root, "params.yaml", "lr: 0.1\nepochs: 3\nmodel:\n  depth: 2\n")
    write(project.root, "other.yaml", "k: 1\nj: 2\n")
    cli(
        "stage",
        "add",
        "train",
        "--cmd",
        "echo ok > out.txt",
        "-p",
        "lr,epochs",
        "-p",
        "other.yaml:k,j",
        "-o",
        "out.txt",
        ok=True,
    )
    from ruamel.yaml import YAML

    body = YAML(typ="safe").load(Path(project.root, "repro.yaml").read_text())
    assert body["stages"]["train"]["params"] == ["lr", "epochs", "other.yaml:k", "other.yaml:j"]
    cli("run", ok=True)
    assert cli("status", "--exit-code").code == 0
    write(project.root, "other.yaml", "k: 1\nj: 3\n")
    assert _states(cli)["train"]["state"] == "stale"
    before = Path(project.root, "repro.yaml").read_bytes()
    r = cli("stage", "add", "t2", "--cmd", "echo", "-p", "lr,momentum")
    assert r.code not in (0, 70) and "Traceback" not in r.err
    assert "'momentum' is not in params.yaml" in r.err and "repro.yaml" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert Path(project.root, "repro.yaml").read_bytes() == before


def test_stage_add_error_names_repro_yaml_not_a_temporary_file(project, cli) -> None:
    write(project.root, "repro.yaml", "# my pipeline\nstages: {}\n")
    before = Path(project.root, "repro.yaml").read_bytes()
    for args in (["-d", "missing.txt"], ["--seed", "x"], ["-o", "../out"]):
        r = cli("stage", "add", "s", "--cmd", "echo", *args)
        assert r.code != 0 and "Traceback" not in r.err
        assert ".repro/tmp" not in r.err and "repro-" not in r.err
        assert Path(project.root, "repro.yaml").read_bytes() == before
    r = cli("stage", "add", "s", "--cmd", "echo", "-d", "missing.txt")
    assert "repro.yaml" in r.err and "missing.txt" in r.err


def test_dag_draws_each_parent_with_several_roots(project, cli) -> None:
    write(
        project.root,
        "repro.yaml",
        """\
stages:
  prep_a:
    cmd: echo a > a.txt
    outs: [a.txt]
  prep_b:
    cmd: echo b > b.txt
    outs: [b.txt]
  train:
    cmd: cat a.txt b.txt > m.txt
    deps: [a.txt, b.txt]
    outs: [m.txt]
  report:
    cmd: cat b.txt > r.txt
    deps: [b.txt]
    outs: [r.txt]
""",
    )
    lines = cli("dag", ok=True).out.splitlines()
    # train hangs under prep_a with prep_b named as its other parent; report under prep_b only.
    assert lines[0].endswith("prep_a")
    assert any(line.strip().endswith("train ╾ prep_b") for line in lines)
    b = next(i for i, line in enumerate(lines) if line.endswith("── prep_b"))
    assert any("report" in line for line in lines[b + 1 :])
    assert not any("report" in line for line in lines[:b])


def test_parquet_output_without_pyarrow_warns_which_extra(project, cli, tmp_path) -> None:
    # A pyarrow that cannot be imported, ahead of the real one on the path.
    write(tmp_path / "nopyarrow" / "pyarrow", "__init__.py", "raise ImportError('no pyarrow')\n")
    write(tmp_path / "nopyarrow" / "pyarrow", "parquet.py", "raise ImportError('no pyarrow')\n")
    write(
        project.root,
        "repro.yaml",
        "stages:\n  s:\n    cmd: printf 'PAR1' > t.parquet && printf 'PAR1' > u.parquet\n"
        "    outs: [t.parquet, u.parquet]\n",
    )
    r = cli("run", env={"PYTHONPATH": str(tmp_path / "nopyarrow")})
    assert r.code == 0, r.err
    warnings = [line for line in r.err.splitlines() if "repro-engine[parquet]" in line]
    assert len(warnings) == 1 and "schema" in warnings[0].lower()
    lock = json.loads(Path(project.root, "repro.lock").read_text())
    assert set(lock["stages"]["s"]["outs"]) == {"t.parquet", "u.parquet"}
