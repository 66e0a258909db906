"""Non-admin pages of the protocols app, for signed-in staff (checked like the admin itself)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from protocols import views

app_name = "protocols"
urlpatterns: list = [
    path(
        "staff/protocol-versions/<int:pk>/timeline.svg",
        admin.site.admin_view(views.version_timeline),
        name="version-timeline",
    ),
    path("staff/lots/<int:pk>/certificate/", admin.site.admin_view(views.lot_certificate), name="lot-certificate"),
]
