"""The access log is append-only and hash-chained: editing or removing a row is found by verify_audit_log."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.db import connection

from clinic.audit import GENESIS_HASH, record_event, verify_chain
from clinic.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain(auditor, clinic_a):
    """Five entries, as an auditor's day might leave them."""
    return [
        record_event(actor=auditor, action=action, clinic=clinic_a, detail={"n": n, "at": dt.date(2026, 3, n + 1)})
        for n, action in enumerate(["view", "screening.run", "screening.override", "photo.download", "export.run"])
    ]


def _raw(sql: str, *params: object) -> None:
    table = AuditEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(sql.format(table=table), params)


def test_it_chains_each_entry_to_the_one_before(chain):
    assert chain[0].previous_hash == GENESIS_HASH
    for before, after in zip(chain, chain[1:], strict=False):
        assert after.previous_hash == before.entry_hash
    report = verify_chain()
    assert report.intact
    assert report.checked == 5
    assert report.tail_hash == chain[-1].entry_hash


def test_it_stores_who_where_what_and_the_request_id(auditor, clinic_a, rf):
    request = rf.get("/")
    request.request_id = "req-12345678"

    event = record_event(actor=auditor, action="view", clinic=clinic_a, obj=clinic_a, objects=[auditor], request=request)

    event.refresh_from_db()
    assert (event.actor, event.actor_label, event.clinic) == (auditor, auditor.username, clinic_a)
    assert (event.object_type, event.object_id) == ("clinic.clinic", str(clinic_a.pk))
    assert event.detail["objects"] == [{"type": "auth.user", "id": str(auditor.pk)}]
    assert event.request_id == "req-12345678"


def test_it_finds_a_row_tampered_with_in_the_database(chain):
    _raw("UPDATE {table} SET action = %s WHERE id = %s", "nothing.to.see", chain[2].pk)

    report = verify_chain()

    assert report.broken_at == chain[2].pk
    assert report.reason == "content does not match its hash"


def test_it_finds_a_tampered_detail(chain):
    _raw("UPDATE {table} SET detail = %s WHERE id = %s", '{"n": 99, "at": "2026-03-02"}', chain[1].pk)

    assert verify_chain().broken_at == chain[1].pk


def test_it_finds_a_row_rehashed_after_tampering_by_its_successor(chain):
    # A careful forger recomputes the edited row's own hash; the next link still breaks.
    forged = AuditEvent.objects.get(pk=chain[2].pk)
    forged.action = "nothing.to.see"
    _raw("UPDATE {table} SET action = %s, entry_hash = %s WHERE id = %s", forged.action, forged.compute_hash(), forged.pk)

    report = verify_chain()

    assert report.broken_at == chain[3].pk
    assert report.reason == "previous hash does not match the entry before it"


def test_it_finds_a_deleted_row(chain):
    _raw("DELETE FROM {table} WHERE id = %s", chain[1].pk)

    report = verify_chain()

    assert report.broken_at == chain[2].pk
    assert report.reason == "previous hash does not match the entry before it"


def test_it_finds_a_deleted_first_row(chain):
    _raw("DELETE FROM {table} WHERE id = %s", chain[0].pk)

    assert verify_chain().broken_at == chain[1].pk


def test_it_finds_deleted_tail_rows_given_a_hash_noted_earlier(chain):
    noted = verify_chain().tail_hash
    _raw("DELETE FROM {table} WHERE id = %s", chain[-1].pk)

    assert verify_chain().intact  # nothing after the gap to notice it
    report = verify_chain(expect_hash=noted)
    assert not report.intact
    assert "expected hash" in report.reason


def test_it_refuses_updates_and_deletes_through_the_app(chain):
    event = chain[0]
    event.action = "edited"
    with pytest.raises(PermissionDenied):
        event.save()
    with pytest.raises(PermissionDenied):
        event.delete()
    with pytest.raises(PermissionDenied):
        AuditEvent.objects.filter(pk=event.pk).update(action="edited")
    with pytest.raises(PermissionDenied):
        AuditEvent.objects.all().delete()
    assert verify_chain().intact


def test_the_command_reports_an_intact_chain(chain, capsys):
    call_command("verify_audit_log")

    assert capsys.readouterr().out.startswith("5 entries, chain intact (tail hash ")


def test_the_command_reports_an_empty_log_as_intact(db, capsys):
    call_command("verify_audit_log")

    assert "0 entries, chain intact" in capsys.readouterr().out


def test_the_command_fails_at_the_first_broken_link(chain):
    _raw("DELETE FROM {table} WHERE id = %s", chain[3].pk)

    with pytest.raises(CommandError, match=f"Chain broken at entry {chain[4].pk} \\(4 entries checked\\)") as failed:
        call_command("verify_audit_log")
    assert failed.value.returncode == 1


def test_the_command_fails_when_the_expected_tail_is_gone(chain):
    noted = chain[-1].entry_hash
    _raw("DELETE FROM {table} WHERE id = %s", chain[-1].pk)

    with pytest.raises(CommandError, match="expected hash"):
        call_command("verify_audit_log", expect_hash=noted)


def test_it_chains_onto_the_winner_when_another_writer_took_the_tail(auditor, clinic_a, monkeypatch):
    first = record_event(actor=auditor, action="view", clinic=clinic_a)
    rival = record_event(actor=None, action="rival")  # appended by another process meanwhile
    stale = iter([first.entry_hash])  # the tail as a slow reader saw it before the rival's insert
    real_order_by = AuditEvent.objects.order_by

    class StaleTail:
        def __init__(self, tail: str) -> None:
            self.tail = tail

        def values_list(self, *args: object, **kwargs: object) -> StaleTail:
            return self

        def first(self) -> str:
            return self.tail

    def order_by(*fields: str):  # noqa: ANN202
        tail = next(stale, None) if fields == ("-id",) else None
        return StaleTail(tail) if tail else real_order_by(*fields)

    monkeypatch.setattr(AuditEvent.objects, "order_by", order_by)

    event = record_event(actor=auditor, action="view", clinic=clinic_a)

    # The first insert collided on the unique previous_hash and was retried on the new tail.
    assert event.previous_hash == rival.entry_hash
    assert AuditEvent.objects.count() == 3
    assert verify_chain().intact


def test_the_admin_lists_the_newest_entry_first(client, auditor, chain):
    client.force_login(auditor)
    response = client.get("/admin/clinic/auditevent/")
    assert response.status_code == 200
    listed = [event.pk for event in response.context["cl"].result_list]
    assert listed[0] == chain[-1].pk
    assert listed == sorted(listed, reverse=True)


def test_a_service_not_handed_the_request_still_logs_its_request_id(client, clinician, clinic_a):
    # Starting a draft from the admin: versioning.start_draft is not given the request.
    from protocols.models import ProtocolVersion
    from tests.factories import ProtocolFactory, VersionFactory

    published = VersionFactory(protocol=ProtocolFactory(clinic=clinic_a), status=ProtocolVersion.Status.PUBLISHED)
    client.force_login(clinician)
    response = client.post(f"/admin/protocols/protocolversion/{published.pk}/new-draft/",
                           headers={"X-Request-Id": "req-draft-000123"})
    assert response.status_code == 302
    assert AuditEvent.objects.get(action="protocol.draft").request_id == "req-draft-000123"
    # Outside a request (a task, a command) there is none.
    assert record_event(actor=None, action="test.outside", clinic=clinic_a).request_id == ""
