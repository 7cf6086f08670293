"""The ValidationReport artifact: what is wrong with a dataset, and how badly.

Plain pydantic models, stored as JSON (artifact type ``"ValidationReport"``, file
``report.json``). Produced by :func:`conveyor.data.validation.validate_dataset` and the
``validate`` standard component; rendered by the HTML reports and the CLI.

An :class:`Anomaly` is one finding about one feature (or the dataset as a whole when
``feature`` is None). Its :class:`Severity` decides what happens next: any ``error`` fails the
``validate`` step (:class:`conveyor.data.errors.ValidationFailed`) and so halts the pipeline
before training; ``warning`` and ``info`` are recorded and shown.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from conveyor.core.materializers import Materializer

__all__ = [
    "Anomaly",
    "AnomalyKind",
    "Severity",
    "ValidationReport",
    "ValidationReportMaterializer",
]

REPORT_FILE = "report.json"
_SUMMARY_LINES = 10


class Severity(StrEnum):
    """How bad an anomaly is: ``error`` stops the pipeline, the others are recorded."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class AnomalyKind(StrEnum):
    """What kind of problem an anomaly is (TFDV's anomaly types, condensed)."""

    MISSING_COLUMN = "missing_column"
    UNEXPECTED_COLUMN = "unexpected_column"
    TYPE_CHANGE = "type_change"
    MISSING_FRACTION = "missing_fraction"
    OUT_OF_RANGE = "out_of_range"
    UNSEEN_CATEGORIES = "unseen_categories"
    EMPTY_DATASET = "empty_dataset"
    LABEL_MISSING = "label_missing"
    DRIFT = "drift"
    SKEW = "skew"


class Anomaly(BaseModel):
    """One finding about one feature (``feature`` None: about the whole dataset).

    ``observed`` and ``expected`` hold the numbers behind the message (JSON values), so the
    reports can draw them without parsing text. ``split`` names the split the finding is
    about when a report covers several (None: the report's only split, or drift/skew).

    Example:
        >>> a = Anomaly(kind="missing_fraction", feature="age", severity="error",
        ...             message="12.0% missing, at most 5.0% allowed",
        ...             observed=0.12, expected=0.05)
        >>> a.line()
        'error    missing_fraction   age: 12.0% missing, at most 5.0% allowed'
    """

    kind: AnomalyKind
    feature: str | None
    severity: Severity
    message: str
    observed: Any = None
    expected: Any = None
    split: str | None = None

    def line(self) -> str:
        """One readable line: severity, kind, [split,] feature and message."""
        where = f"{self.feature}: " if self.feature is not None else ""
        split = f"[{self.split}] " if self.split else ""
        return f"{self.severity.value:<8} {self.kind.value:<18} {split}{where}{self.message}"


class ValidationReport(BaseModel):
    """Anomalies found in a dataset against a schema, plus drift and skew.

    ``split`` names the split validated, or several comma-separated (``"train,eval"``; each
    anomaly then names its own). ``drift`` and ``skew`` are
    :meth:`conveyor.data.drift.DriftReport.to_dict` results (drift: against the previous
    span; skew: against serving data), None when not computed.

    Example:
        >>> report = ValidationReport(dataset="census", split="train", schema_source="inferred")
        >>> report.ok
        True
        >>> report.summary()
        'census/train: no anomalies (schema: inferred)'
    """

    format_version: ClassVar[int] = 1
    dataset: str | None = None
    split: str = "all"
    anomalies: list[Anomaly] = Field(default_factory=list)
    drift: dict[str, Any] | None = None
    skew: dict[str, Any] | None = None
    schema_source: str = "inferred"

    @property
    def errors(self) -> list[Anomaly]:
        """Anomalies of severity ``error``."""
        return [a for a in self.anomalies if a.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Anomaly]:
        """Anomalies of severity ``warning``."""
        return [a for a in self.anomalies if a.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        """True when no anomaly is an error (warnings do not stop a pipeline)."""
        return not self.errors

    def summary(self, max_lines: int = _SUMMARY_LINES) -> str:
        """Counts by severity, then the first ``max_lines`` anomalies (errors first).

        Bounded in length whatever the number of anomalies, so it fits an exception message.
        """
        name = f"{self.dataset or 'dataset'}/{self.split}"
        if not self.anomalies:
            return f"{name}: no anomalies (schema: {self.schema_source})"
        counts = [
            f"{n} {sev.value}{'s' if n > 1 else ''}"
            for sev in Severity
            if (n := sum(a.severity is sev for a in self.anomalies))
        ]
        head = f"{name}: {', '.join(counts)} (schema: {self.schema_source})"
        order = {sev: i for i, sev in enumerate(Severity)}
        ranked = sorted(self.anomalies, key=lambda a: order[a.severity])
        lines = [f"  {a.line()}" for a in ranked[:max_lines]]
        if len(ranked) > max_lines:
            lines.append(f"  ... and {len(ranked) - max_lines} more")
        return "\n".join([head, *lines])

    def write_html(self, path: str | Path, *, statistics: Any = None) -> Path:
        """Render this report (with the statistics' tables and plots, when given: a
        DatasetStatistics or SplitStatistics) as one self-contained HTML file.

        Written to a temporary name, then renamed, so the file is never half-written.

        Example:
            >>> report.write_html("validation.html", statistics=stats)
            PosixPath('validation.html')
        """
        from conveyor.data.report import render_validation_html
        from conveyor.data.statistics_model import DatasetStatistics, SplitStatistics

        if isinstance(statistics, SplitStatistics):
            statistics = DatasetStatistics(
                dataset=self.dataset, splits={statistics.split: statistics}
            )
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(render_validation_html(self, statistics=statistics), encoding="utf-8")
        tmp.replace(target)
        return target

    def to_json(self) -> str:
        """Stable, indented JSON (what the materializer writes)."""
        payload = {"format_version": self.format_version, **self.model_dump(mode="json")}
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ValidationReport:
        """Parse :meth:`to_json` output."""
        data = json.loads(text)
        data.pop("format_version", None)
        return cls.model_validate(data)


class ValidationReportMaterializer(Materializer):
    """:class:`ValidationReport` <-> ``report.json`` (artifact type ``"ValidationReport"``).

    Properties record the verdict, so ``conveyor artifacts`` lists show it without loading.
    """

    python_types = (ValidationReport,)
    artifact_type = "ValidationReport"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        report: ValidationReport = obj
        (folder / REPORT_FILE).write_text(report.to_json(), encoding="utf-8")
        return {
            "ok": report.ok,
            "errors": len(report.errors),
            "warnings": len(report.warnings),
            "anomalies": len(report.anomalies),
            "dataset": report.dataset,
            "split": report.split,
        }

    def load(self, folder: Path, python_type: type) -> Any:
        return ValidationReport.from_json((folder / REPORT_FILE).read_text(encoding="utf-8"))
