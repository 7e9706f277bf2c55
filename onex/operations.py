"""What the sync writes to One X, as values, and the interface that carries them.

The reconcile step produces `PutAbsence`/`DeleteAbsence` operations; an `AbsenceWriter`
applies them and says, per operation, whether it succeeded. `onex.client` implements it over
HTTP; `InMemoryAbsences` implements it for tests and benchmarks.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class AbsenceEntry:
    reason_code: str
    start: datetime
    end: datetime  # exclusive
    return_at: datetime
    divert: bool
    open_diversion: bool
    note: str | None


@dataclass(frozen=True)
class PutAbsence:
    subscription_id: str
    external_id: str
    entry: AbsenceEntry


@dataclass(frozen=True)
class DeleteAbsence:
    subscription_id: str
    external_id: str


Operation = PutAbsence | DeleteAbsence


@dataclass(frozen=True)
class OperationResult:
    operation: Operation
    ok: bool
    code: str = ""  # One X problem code, e.g. "feature_not_enabled"
    permanent: bool = False  # retrying the same operation cannot succeed
    detail: str = ""


class AbsenceWriter(Protocol):
    def apply(self, company_id: str, operations: Sequence[Operation]) -> list[OperationResult]:
        """Apply each operation on its own; one result per operation, in order."""


@dataclass
class InMemoryAbsences:
    """One X's absence store in a dict, with an optional per-operation failure hook."""

    entries: dict[tuple[str, str, str], AbsenceEntry] = field(default_factory=dict)
    fail: object = None  # callable(operation) -> OperationResult | None

    def apply(self, company_id, operations):
        results = []
        for operation in operations:
            failure = self.fail(operation) if self.fail else None
            if failure is not None:
                results.append(failure)
                continue
            key = (company_id, operation.subscription_id, operation.external_id)
            if isinstance(operation, PutAbsence):
                self.entries[key] = operation.entry
            else:
                self.entries.pop(key, None)
            results.append(OperationResult(operation, ok=True))
        return results

    def for_subscription(self, company_id, subscription_id):
        return {
            external_id: entry
            for (company, subscription, external_id), entry in self.entries.items()
            if company == company_id and subscription == subscription_id
        }
