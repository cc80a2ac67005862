"""Per-kind acceptance: live objects on a real server, read through the catalog path a run uses, planned steps
asserted, applied with the run's own executor."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from pgconverge import pipeline, plan, spec
from pgconverge.execute import connect, run_step


class Kit:
    def __init__(self, url: str, folder: Path):
        self.url = url
        self.folder = folder

    def spec(self, text: str, files: dict[str, str] | None = None) -> spec.Spec:
        for name, body in (files or {}).items():
            (self.folder / "sql" / name).parent.mkdir(parents=True, exist_ok=True)
            (self.folder / "sql" / name).write_text(body)
        (self.folder / "phases.yml").write_text(text)
        return spec.load(self.folder / "phases.yml")

    def plan(self, loaded: spec.Spec, phase: str) -> plan.Plan:
        with connect(self.url) as conn:
            return pipeline.converge_plan(conn, loaded, [phase])

    def rollback(self, loaded: spec.Spec, phase: str) -> plan.Plan:
        with connect(self.url) as conn:
            return pipeline.rollback_plan(conn, loaded, phase)

    def apply(self, loaded: spec.Spec, steps) -> None:
        with connect(self.url) as conn:
            for step in steps:
                run_step(conn, self.url, step, loaded.settings, lambda _: None)

    def execute(self, *statements: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]

    def scalar(self, query: str):
        with psycopg.connect(self.url) as conn:
            row = conn.execute(query).fetchone()  # type: ignore[arg-type]
            return row[0] if row else None


@pytest.fixture
def kit(fresh_db, tmp_path) -> Kit:
    return Kit(fresh_db, tmp_path)


@pytest.fixture
def cron_kit(cron_db, tmp_path) -> Kit:
    return Kit(cron_db, tmp_path)
