"""When the in-clinic exosome application steps of a timeline were actually done, from the recorded applications.

An ``ExosomeApplication`` names no protocol step, so it is matched to one by
these rules:

* only steps of kind ``in_clinic_application`` take applications, their
  occurrences in planned order;
* an occurrence takes the earliest application not yet taken of the step's
  product (of any product when the step names none), one per arm: a
  split-face treatment applies the step to each arm;
* its recorded time is the earliest of the applications it took (the product
  went on from then); an occurrence left without one keeps the protocol's time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from patients.models import ExosomeApplication
from patients.timeline import Occurrence
from protocols.models import ProtocolStep, StepKind


def _matches(step: ProtocolStep, application: ExosomeApplication) -> bool:
    return step.product_id is None or application.lot.product_id == step.product_id


def recorded_application_times(
    *, steps: Mapping[int, ProtocolStep], occurrences: Iterable[Occurrence], applications: Iterable[ExosomeApplication]
) -> dict[tuple[int, int], dt.datetime]:
    """(step id, occurrence) → when the application was recorded as done, for in-clinic steps that have one.

    ``applications`` need their ``lot`` and ``treatment`` loaded (``applied_at()`` reads the procedure's end).
    """
    in_clinic = [item for item in occurrences if steps[item.step_id].kind == StepKind.IN_CLINIC_APPLICATION]
    untaken = sorted(applications, key=lambda application: (application.minutes_after_procedure, application.pk))
    times = {}
    for occurrence in sorted(in_clinic, key=lambda item: (item.occurs_at, steps[item.step_id].order, item.occurrence)):
        step = steps[occurrence.step_id]
        taken: dict[int | None, ExosomeApplication] = {}
        for application in untaken:
            if _matches(step, application) and application.arm_id not in taken:
                taken[application.arm_id] = application
        if taken:
            untaken = [application for application in untaken if application not in taken.values()]
            times[(occurrence.step_id, occurrence.occurrence)] = min(item.applied_at() for item in taken.values())
    return times
