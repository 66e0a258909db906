from __future__ import annotations

from django.apps import AppConfig


class ProtocolsConfig(AppConfig):
    name = "protocols"
    verbose_name = "Protocols, products and rules"
    default_auto_field = "django.db.models.BigAutoField"
