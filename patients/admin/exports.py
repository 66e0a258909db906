"""Admin pages: exports — the request form, the progress page, downloads and manifests.

Only people with the export capability (clinic admins and auditors) reach
any of it, and only for their own clinics.  Every decision is made in
``patients.exports``; these views parse the form and hand over.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from clinic.admin_base import ClinicScopedAdmin
from clinic.ids import row_id
from clinic.roles import Capability
from clinic.scoping import can, can_anywhere, clinic_of, scoped
from patients import exports
from patients.models import Export

_DEIDENTIFIED_DATES = [
    (Export.DateHandling.SHIFTED, Export.DateHandling.SHIFTED.label),
    (Export.DateHandling.DAY_OFFSETS, Export.DateHandling.DAY_OFFSETS.label),
]


class ExportForm(forms.Form):
    clinic = forms.ModelChoiceField(queryset=None, empty_label=None)
    # A lot's recall list is taken from the lot's own page, where the lot is chosen.
    kind = forms.ChoiceField(
        choices=[(value, label) for value, label in Export.Kind.choices if value != Export.Kind.RECALL],
        label="What", initial=Export.Kind.OUTCOMES,
    )
    format = forms.ChoiceField(choices=Export.Format.choices, initial=Export.Format.CSV)
    date_from = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}),
        help_text=(
            "Outcome log and adverse events: procedure date. Reminder ledger: due date. Clinic-local days, inclusive."
        ),
    )
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    protocol = forms.ModelChoiceField(queryset=None, required=False, empty_label="Every protocol")
    clinician = forms.ModelChoiceField(queryset=None, required=False, empty_label="Every clinician")
    identified = forms.TypedChoiceField(
        choices=[("no", "De-identified: a pseudonym per patient, no names, emails or birth dates"),
                 ("yes", "Identified: names, emails, birth dates and notes")],
        coerce=lambda value: value == "yes", initial="no", widget=forms.RadioSelect, label="People",
    )
    date_handling = forms.ChoiceField(
        choices=_DEIDENTIFIED_DATES, initial=Export.DateHandling.SHIFTED, label="Dates (de-identified)",
        help_text="Identified exports always carry the real dates.",
    )
    background = forms.BooleanField(
        required=False, label="Run in the background",
        help_text="Large exports always run in the background; the page shows progress and a download link.",
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["clinic"].queryset = exports.export_clinics(user)
        self.fields["protocol"].queryset = exports.protocol_choices(user)
        self.fields["clinician"].queryset = exports.clinician_choices(user)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        for field, messages in exports.request_errors(user=self.user, request=self.export_request()).items():
            for message in messages:
                self.add_error(field if field in self.fields else None, message)
        return cleaned

    def export_request(self) -> exports.ExportRequest:
        data = self.cleaned_data
        return exports.ExportRequest(
            clinic=data["clinic"], kind=data["kind"], format=data["format"], identified=data["identified"],
            date_handling=data["date_handling"], date_from=data.get("date_from"), date_to=data.get("date_to"),
            protocol=data.get("protocol"), clinician=data.get("clinician"),
        )


def streaming_download(export: Export, *, request: HttpRequest) -> StreamingHttpResponse:
    """A small export sent as it is written; the job and the access log are finished with the last byte."""
    response = StreamingHttpResponse(
        exports.stream_export(export, request=request), content_type=exports.CONTENT_TYPES[export.format]
    )
    response["Content-Disposition"] = f'attachment; filename="{exports.download_name(export)}"'
    response["X-Export-Id"] = str(export.pk)
    return response


def file_download(export: Export, *, request: HttpRequest) -> HttpResponse:
    """A stored export file, if it is still kept; logged as a download."""
    if not export.is_downloadable:
        raise Http404("This export has no file to download (it was streamed, is not finished, or has expired).")
    exports.record_download(export=export, user=request.user, request=request)
    return FileResponse(
        export.file.open("rb"), as_attachment=True, filename=export.file_name,
        content_type=exports.CONTENT_TYPES[export.format],
    )


def manifest_download(export: Export) -> HttpResponse:
    if not export.manifest:
        raise Http404("The manifest is written when the export finishes.")
    response = HttpResponse(json.dumps(export.manifest, indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{export.file_name}.manifest.json"'
    return response


@admin.register(Export)
class ExportAdmin(ClinicScopedAdmin):
    """Exports: request one, watch it run, download it while it is kept."""

    list_display = ["created_at", "kind", "format", "people", "status", "progress", "row_count", "requested_by", "clinic"]
    list_filter = ["kind", "format", "status", "identified", "clinic"]
    list_display_links = ["created_at"]
    date_hierarchy = "created_at"

    # --- permissions: the export capability, nothing else -------------------------
    def get_queryset(self, request: HttpRequest) -> Any:
        return scoped(Export.objects.select_related("clinic", "requested_by"), request.user, Capability.EXPORT)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_anywhere(request.user, Capability.EXPORT)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return can_anywhere(request.user, Capability.EXPORT)
        return can(request.user, Capability.EXPORT, clinic_of(obj))

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return can_anywhere(request.user, Capability.EXPORT)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # an export is a record of what left the system

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # --- list columns -----------------------------------------------------------------
    @admin.display(description="People")
    def people(self, export: Export) -> str:
        return "identified" if export.identified else "de-identified"

    @admin.display(description="Progress")
    def progress(self, export: Export) -> str:
        return format_html('<progress max="100" value="{}">{} %</progress>', export.percent, export.percent)

    # --- pages ---------------------------------------------------------------------------
    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:export_id>/download/", wrap(self.download_view), name="patients_export_download"),
            path("<int:export_id>/manifest/", wrap(self.manifest_view), name="patients_export_manifest"),
            *super().get_urls(),
        ]

    def _export_or_404(self, request: HttpRequest, export_id: int) -> Export:
        # Looked up in the scoped queryset: another clinic's export does not exist here.
        export = self.get_queryset(request).filter(pk=export_id).first()
        if export is None:
            raise Http404("No such export.")
        return export

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ExportForm(request.POST or None, user=request.user)
        if request.method == "POST" and form.is_valid():
            try:
                export = exports.start_export(
                    user=request.user, request=form.export_request(), background=form.cleaned_data["background"]
                )
            except exports.ExportRequestError as refused:  # a race with a role change; same messages
                for field, messages in refused.errors.items():
                    for message in messages:
                        form.add_error(field if field in form.fields else None, message)
            else:
                if export.streamed:
                    return streaming_download(export, request=request)
                return HttpResponseRedirect(reverse("admin:patients_export_change", args=[export.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "New export",
            "form": form,
            "inline_max_rows": exports.inline_max_rows(),
        }
        return TemplateResponse(request, "admin/exports/export_form.html", context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        try:
            export = self._export_or_404(request, int(object_id))
        except ValueError:
            raise Http404("No such export.") from None
        running = export.status in (Export.Status.PENDING, Export.Status.RUNNING)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Export #{export.pk}",
            "export": export,
            "running": running,
            "manifest_json": json.dumps(export.manifest, indent=2) if export.manifest else "",
        }
        return TemplateResponse(request, "admin/exports/export_detail.html", context)

    def history_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        # Export jobs keep their own record (and the access log); there is no edit history.
        export_id = row_id(object_id)
        if export_id is None:
            raise Http404("No such export.")
        export = self._export_or_404(request, export_id)  # another clinic's export: 404, not a redirect
        return HttpResponseRedirect(reverse("admin:patients_export_change", args=[export.pk]))

    def download_view(self, request: HttpRequest, export_id: int) -> HttpResponse:
        return file_download(self._export_or_404(request, export_id), request=request)

    def manifest_view(self, request: HttpRequest, export_id: int) -> HttpResponse:
        return manifest_download(self._export_or_404(request, export_id))
