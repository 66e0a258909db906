"""Messages count things in plain words: "1 reminder", "3 reminders"."""

from __future__ import annotations

from clinic.words import counted, verb


def test_it_counts_in_the_singular_and_the_plural():
    assert counted(1, "reminder") == "1 reminder"
    assert counted(0, "reminder") == "0 reminders"
    assert counted(3, "reminder") == "3 reminders"
    assert counted(2, "person", "people") == "2 people"
    assert counted(1, "person", "people") == "1 person"


def test_the_verb_agrees():
    assert (verb(1, "is", "are"), verb(2, "is", "are")) == ("is", "are")
