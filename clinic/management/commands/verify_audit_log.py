"""Check the access log's hash chain and report the first broken link."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinic.audit import verify_chain


class Command(BaseCommand):
    help = "Verify the access log's hash chain; exits non-zero at the first broken link."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--expect-hash",
            default=None,
            help="A tail hash printed by an earlier run; fails if that entry is no longer in the chain.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = verify_chain(expect_hash=options["expect_hash"])
        if report.broken_at is not None:
            raise CommandError(
                f"Chain broken at entry {report.broken_at} ({report.checked} entries checked): {report.reason}"
            )
        if report.reason:
            raise CommandError(f"{report.checked} entries checked: {report.reason}")
        self.stdout.write(f"{report.checked} entries, chain intact (tail hash {report.tail_hash})")
