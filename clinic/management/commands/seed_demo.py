"""Create (or complete) the demo clinic: staff of every role, the rule library, example protocols,
products, patients, treatments and outcomes. Idempotent: running it twice creates no duplicates."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from clinic.demo import DEMO_CLINIC_SLUG, DEMO_STAFF, install_demo_clinic, install_demo_content


class Command(BaseCommand):
    help = "Create the demo clinic with one user per role and example data (idempotent)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--reset-passwords", action="store_true", help="Give the demo users new passwords and print them."
        )

    def handle(self, *args: Any, reset_passwords: bool = False, **options: Any) -> None:
        User = get_user_model()  # noqa: N806
        with transaction.atomic():
            summary = install_demo_clinic()
            install_demo_content(summary)
        self.stdout.write(self.style.SUCCESS(f"Demo clinic '{summary.clinic.name}' ({DEMO_CLINIC_SLUG}) is ready."))
        for line in summary.lines:
            self.stdout.write(f"  {line}")
        self.stdout.write("Staff logins (http://127.0.0.1:8000/admin/):")
        for username, role in DEMO_STAFF:
            user = User.objects.get(username=username)
            if username in summary.new_users or reset_passwords:
                password = secrets.token_urlsafe(12)
                user.set_password(password)
                user.save(update_fields=["password"])
                self.stdout.write(f"  {role:<13} {username:<22} password: {password}")
            else:
                self.stdout.write(f"  {role:<13} {username:<22} (password unchanged; --reset-passwords prints new ones)")
