from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class ClinicConfig(AppConfig):
    name = "clinic"
    verbose_name = "Clinic and staff"
    default_auto_field = "django.db.models.BigAutoField"


class AftercareAdminConfig(AdminConfig):
    default_site = "clinic.admin_site.AftercareAdminSite"
