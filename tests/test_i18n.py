import re
from pathlib import Path

from django.urls import reverse

PO_FILE = Path(__file__).resolve().parent.parent / "mss/locale/sv/LC_MESSAGES/django.po"


def test_it_serves_the_login_page_in_swedish_by_default(client, db):
    body = client.get(reverse("login")).content.decode()
    assert 'lang="sv"' in body
    assert "Logga in" in body
    assert "Användarnamn" in body


def test_it_switches_to_english(client, db):
    client.post(reverse("set_language"), {"language": "en", "next": "/login/"})
    body = client.get(reverse("login")).content.decode()
    assert 'lang="en"' in body
    assert "Log in" in body


def test_it_has_a_swedish_translation_for_every_string():
    text = PO_FILE.read_text(encoding="utf-8")
    entries = text.split("\n\n")[1:]  # the first entry is the header
    assert len(entries) > 20
    untranslated = []
    for entry in entries:
        if "#, fuzzy" in entry:
            untranslated.append(entry)
        msgstrs = re.findall(r'^msgstr(?:\[\d\])? "(.*)"\n?((?:".*"\n?)*)', entry, re.M)
        if not msgstrs or any(not (first or rest.strip()) for first, rest in msgstrs):
            untranslated.append(entry)
    assert untranslated == []
