"""Special-use folders recognised by their names, in the languages users actually have."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, strategies as st

from mailmigrate.formats.specialuse import canonical_name, guess_special_use


@pytest.mark.parametrize("name, use", [
    ("Sent", "\\Sent"), ("Sent Items", "\\Sent"), ("Sent Messages", "\\Sent"), ("SENT MAIL", "\\Sent"),
    ("Deleted Items", "\\Trash"), ("Deleted Messages", "\\Trash"), ("Trash", "\\Trash"),
    ("Spam", "\\Junk"), ("Junk E-mail", "\\Junk"), ("Junk", "\\Junk"),
    ("Drafts", "\\Drafts"), ("Archive", "\\Archive"),
    ("Gesendete Elemente", "\\Sent"), ("Gesendete Objekte", "\\Sent"), ("Papierkorb", "\\Trash"),
    ("Entwürfe", "\\Drafts"), ("Junk-E-Mail", "\\Junk"), ("Archiv", "\\Archive"),
    ("Éléments envoyés", "\\Sent"), ("Corbeille", "\\Trash"), ("Brouillons", "\\Drafts"),
    ("Courrier indésirable", "\\Junk"),
    ("Posta inviata", "\\Sent"), ("Cestino", "\\Trash"), ("Bozze", "\\Drafts"), ("Posta indesiderata", "\\Junk"),
    ("Elementos enviados", "\\Sent"), ("Papelera", "\\Trash"), ("Borradores", "\\Drafts"),
    ("Correo no deseado", "\\Junk"),
    ("Verzonden items", "\\Sent"), ("Prullenbak", "\\Trash"), ("Concepten", "\\Drafts"),
    ("Ongewenste e-mail", "\\Junk"),
    ("Odeslaná pošta", "\\Sent"), ("Koš", "\\Trash"), ("Koncepty", "\\Drafts"), ("Nevyžádaná pošta", "\\Junk"),
    ("Itens enviados", "\\Sent"), ("Lixeira", "\\Trash"), ("Rascunhos", "\\Drafts"), ("Lixo eletrônico", "\\Junk"),
    ("Wysłane", "\\Sent"), ("Kosz", "\\Trash"), ("Kopie robocze", "\\Drafts"), ("Wiadomości-śmieci", "\\Junk"),
])
def test_localised_names(name, use):
    assert guess_special_use(name) == use
    assert guess_special_use(name.upper()) == use
    assert guess_special_use(unicodedata.normalize("NFD", name)) == use  # macOS writes decomposed accents


@pytest.mark.parametrize("name", ["INBOX", "Work", "Projects", "Sent stuff", "Concepts", ""])
def test_ordinary_names_are_not_guessed(name):
    assert guess_special_use(name) is None


def test_paths_count_only_at_top_or_under_inbox():
    assert guess_special_use(("Sent Items",)) == "\\Sent"
    assert guess_special_use(("INBOX", "Trash")) == "\\Trash"
    assert guess_special_use(("Projects", "Trash")) is None
    assert guess_special_use(("INBOX", "a", "Trash")) is None
    assert guess_special_use(("INBOX",)) is None


def test_canonical_names():
    assert [canonical_name(u) for u in ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive")] == \
        ["Sent", "Drafts", "Trash", "Junk", "Archive"]


@given(st.text(max_size=30))
def test_fuzz_never_crashes(name):
    assert guess_special_use(name) in (None, "\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive")
