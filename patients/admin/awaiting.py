"""Admin page: the outcome checks that fell due with no clinician entry, the rows the dashboard counts.

The rows are ``patients.outcome_status.outcomes_awaiting`` for the person's clinics
(``clinics_for``, as on the dashboard), or for one of them (``?clinic=<id>``, the
dashboard's link), most overdue first, a page at a time. Each links to its treatment
and to the outcome form filled in with the treatment and the day.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.http import urlencode

from clinic.ids import row_id
from clinic.roles import Capability
from clinic.scoping import can, clinics_for, sees_several_clinics
from patients.models import OutcomeAssessment
from patients.outcome_status import AWAITING_WINDOW_DAYS, awaiting_checks, outcomes_awaiting

PAGE_SIZE = 50


def awaiting_outcomes_view(request: HttpRequest, *, admin_site: AdminSite) -> HttpResponse:
    clinics = clinics_for(request.user)
    clinic = None
    chosen = request.GET.get("clinic", "")
    if chosen:
        # Another clinic's id is a 404, like one that does not exist: its name is not shown.
        clinic_id = row_id(chosen)
        clinic = clinics.filter(pk=clinic_id).first() if clinic_id is not None else None
        if clinic is None:
            raise Http404("No such clinic.")
        clinics = clinics.filter(pk=clinic.pk)
    now = timezone.now()
    page = Paginator(outcomes_awaiting(clinics=clinics, now=now), PAGE_SIZE).get_page(request.GET.get("p"))
    rows = [
        (check, can(request.user, Capability.LOG_OUTCOMES, check.treatment.clinic_id))
        for check in awaiting_checks(page.object_list)
    ]
    context: dict[str, Any] = {
        **admin_site.each_context(request),
        "title": "Outcomes awaiting entry" + (f": {clinic.name}" if clinic else ""),
        "opts": OutcomeAssessment._meta,
        "rows": rows,
        "page": page,
        "now": now,
        "window_days": AWAITING_WINDOW_DAYS,
        "show_clinic": clinic is None and sees_several_clinics(request.user),
        "clinic_query": urlencode({"clinic": clinic.pk}) + "&" if clinic else "",
    }
    return TemplateResponse(request, "admin/outcomes/awaiting.html", context)
