"""Posting an admin change page back as a browser would: its form's values and those of its inlines."""

from __future__ import annotations

from typing import Any


def change_form_data(page: Any) -> dict[str, Any]:
    """The values a browser would post from ``page`` (an admin change page response), unchanged."""
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() not in (None, False)}
    for formset in page.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        data.update({management.add_prefix(name): management[name].value() for name in management.fields})
        for inline_form in formset.formset.forms:
            data.update({inline_form.add_prefix(name): inline_form[name].value() for name in inline_form.fields
                         if inline_form[name].value() not in (None, False)})
    return data
