"""The planner asks about images only through the probes its caller injects: by default it
answers from `.repro/tmp/envfp/` and otherwise says "unknown", starting nothing (no engine here:
DOCKER_HOST points nowhere, so any attempt to reach one would fail the test)."""

from __future__ import annotations

import json
import os

import pytest

from repro.lockfile import Lock, save_lock
from repro.pipeline.probes import Probes
from repro.pipeline.status import report
from tests.conftest import write

TAG = "repro-test/probe:v1"
LOCKED = "sha256:" + "a" * 64
MOVED = "sha256:" + "b" * 64
ENV = {"python": "3.99.1", "platform": "linux-x86_64", "packages": {"xxhash": "9.9"}}


@pytest.fixture
def image_stage(project, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    write(project.root, "in.txt", "x")
    write(
        project.root,
        "repro.yaml",
        f"stages:\n  box:\n    cmd: cat in.txt > out.txt\n    image: {TAG}\n"
        "    deps: [in.txt]\n    outs: [out.txt]\n"
        "    environment:\n      python: true\n      packages: [xxhash]\n",
    )
    save_lock(project.lock_path, Lock({}, {}, {TAG: LOCKED}))
    return project


def _box(project, probes: Probes | None = None):
    rep = report(project, None, probes) if probes else report(project)
    return next(s for s in rep.stages if s.name == "box")


def test_default_probes_start_nothing_and_leave_image_unknown(image_stage) -> None:
    box = _box(image_stage)
    assert not [r for r in box.reasons if r.kind == "image"]  # nothing asked: tag not seen moving
    assert box.inputs.environment == {"python": None, "packages": {"xxhash": None}}
    assert not os.path.exists(os.path.join(image_stage.tmp_dir, "envfp"))


def test_injected_resolver_reports_a_moved_tag(image_stage) -> None:
    box = _box(image_stage, Probes(resolve_image=lambda ref: MOVED))
    drift = [r for r in box.reasons if r.kind == "image"]
    assert [(r.target, r.old, r.new) for r in drift] == [(TAG, LOCKED, MOVED)]


def test_probed_image_is_remembered_and_then_answered_from_the_cache(image_stage) -> None:
    asked: list[str] = []

    def probe(digest: str) -> dict:
        asked.append(digest)
        return ENV

    first = _box(image_stage, Probes(probe_image=probe))
    assert asked == [LOCKED]
    assert first.inputs.environment == {"python": "3.99.1", "packages": {"xxhash": "9.9"}}
    cached = os.listdir(os.path.join(image_stage.tmp_dir, "envfp"))
    assert len(cached) == 1
    with open(os.path.join(image_stage.tmp_dir, "envfp", cached[0])) as f:
        assert json.load(f) == ENV
    again = _box(image_stage)  # default probes: the cache answers, nothing is asked
    assert again.inputs.environment == first.inputs.environment
    assert again.inputs.signature == first.inputs.signature
    assert asked == [LOCKED]
