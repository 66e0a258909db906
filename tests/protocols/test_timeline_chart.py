"""The timeline picture: valid SVG, every step and occurrence drawn, served only to the clinic's staff."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from protocols import versioning
from protocols.defaults import install_example_protocols
from protocols.timeline_chart import describe_timing, render_timeline_svg, timeline_rows
from tests.factories import StepFactory

pytestmark = pytest.mark.django_db
SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output, parsed to prove it is well-formed


def _step_groups(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "step"]


@pytest.fixture
def microneedling(clinic_a):
    return install_example_protocols(clinic=clinic_a)["microneedling"]


def test_it_draws_every_step_with_one_mark_per_occurrence(microneedling):
    root = _parse(render_timeline_svg(version=microneedling))
    groups = {g.find(f"{SVG}text").text: g for g in _step_groups(root)}
    assert set(groups) == set(microneedling.steps.values_list("title", flat=True))
    serum = groups["At-home exosome serum"]
    assert len([el for el in serum if el.get("class") == "mark"]) == 7
    assert serum.get("data-kind") == "home_application"
    assert "day 1 at 20:00, daily ×7" in serum.find(f"{SVG}title").text


def test_it_draws_an_avoidance_window_as_a_bar_to_its_end_day(microneedling):
    root = _parse(render_timeline_svg(version=microneedling))
    (avoid,) = [g for g in _step_groups(root) if g.get("data-kind") == "avoidance"]
    (bar,) = [el for el in avoid if el.get("class") == "avoid"]
    rows = {row.title: row for row in timeline_rows(microneedling.steps.all())}
    start, end = rows["No retinoids, acids or exfoliation"].bar
    assert (round(start, 3), end) == (0.75, 5.0)
    assert float(bar.get("width")) > 0


def test_it_runs_the_axis_from_day_zero_to_the_protocol_end(microneedling):
    svg = render_timeline_svg(version=microneedling)
    ticks = [t.text for t in _parse(svg).iter(f"{SVG}text") if t.get("class") == "tick"]
    assert ticks[0] == "day 0" and ticks[-1] == "42"
    assert "day 0 to day 42" in svg


def test_it_extends_the_axis_to_a_step_before_the_procedure(clinic_a):
    ablative = install_example_protocols(clinic=clinic_a)["fractional_ablative"]
    ticks = [t.text for t in _parse(render_timeline_svg(version=ablative)).iter(f"{SVG}text") if t.get("class") == "tick"]
    assert ticks[:2] == ["−1", "day 0"]
    assert ticks[-1] == "60"


def test_it_orders_rows_by_when_the_step_first_happens(microneedling):
    firsts = [row.days[0] for row in timeline_rows(microneedling.steps.all())]
    assert firsts == sorted(firsts)


def test_it_escapes_step_titles(clinic_a):
    draft = versioning.create_protocol(clinic=clinic_a, name="P <b>", procedure="microneedling")
    StepFactory(version=draft, title='Cleanse <script>alert("x")</script> & rinse')
    svg = render_timeline_svg(version=draft)
    assert "<script>" not in svg
    assert any("Cleanse <script>" in (t.text or "") for t in _parse(svg).iter(f"{SVG}text"))


def test_it_renders_an_empty_draft(clinic_a):
    draft = versioning.create_protocol(clinic=clinic_a, name="Empty", procedure="microneedling")
    assert "No steps yet." in render_timeline_svg(version=draft)


def test_it_describes_offsets_and_local_times(clinic_a):
    draft = versioning.create_protocol(clinic=clinic_a, name="P", procedure="microneedling")
    step = StepFactory.build(version=draft, timing="offset", offset_value=30, offset_unit="minutes", day=None,
                             local_time=None)
    assert describe_timing(step) == "+30 minutes"
    step = StepFactory.build(version=draft, day=3, local_time=dt.time(20, 0), repeat_count=2, repeat_every_days=2)
    assert describe_timing(step) == "day 3 at 20:00, every 2 days ×2"


# --- served to the clinic's staff only ---------------------------------------------------------------


def test_it_serves_the_svg_to_the_clinics_staff(client, clinician, microneedling):
    client.force_login(clinician)
    response = client.get(f"/staff/protocol-versions/{microneedling.pk}/timeline.svg")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/svg+xml")
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert b"At-home exosome serum" in response.content


def test_it_hides_the_svg_from_another_clinic(client, clinician_b, microneedling):
    client.force_login(clinician_b)
    assert client.get(f"/staff/protocol-versions/{microneedling.pk}/timeline.svg").status_code == 404


def test_it_sends_anonymous_visitors_to_the_login(client, microneedling):
    response = client.get(f"/staff/protocol-versions/{microneedling.pk}/timeline.svg")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
