from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class ProtocolsConfig(AppConfig):
    name = "protocols"
    verbose_name = "Protocols, products and rules"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from protocols.frozen_steps import forget_frozen_steps
        from protocols.models import ProtocolStep, ProtocolVersion

        for model in (ProtocolVersion, ProtocolStep):
            post_save.connect(forget_frozen_steps, sender=model, dispatch_uid=f"frozen_steps_save_{model.__name__}")
            post_delete.connect(forget_frozen_steps, sender=model, dispatch_uid=f"frozen_steps_delete_{model.__name__}")
