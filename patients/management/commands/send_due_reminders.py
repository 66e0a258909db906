"""Send due reminders and alerts to clinicians without Celery: the same claim, send and sweep as the beat dispatcher."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand

from clinic.words import counted
from patients import staff_alerts
from patients.reminders import send_due_inline


class Command(BaseCommand):
    help = ("Send every due reminder and alert to clinicians now (sweeping expired leases first); with --loop, "
            "keep doing it.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--loop", action="store_true", help="Keep running, one pass every --interval seconds.")
        parser.add_argument("--interval", type=float, default=30.0, help="Seconds between passes with --loop.")
        parser.add_argument("--passes", type=int, default=0, help="With --loop, stop after this many passes (0: never).")

    def handle(self, *args: Any, loop: bool = False, interval: float = 30.0, passes: int = 0, **options: Any) -> None:
        done = 0
        while True:
            sent = send_due_inline()
            alerts = staff_alerts.send_due_inline()
            done += 1
            if sent or alerts or not loop:
                self.stdout.write(f"Handled {counted(sent, 'due reminder')} and {counted(alerts, 'alert')} to clinicians.")
            if not loop or (passes and done >= passes):
                return
            time.sleep(interval)
