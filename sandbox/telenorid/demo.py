"""The people Telenor ID knows out of the box, as in sandbox/onex/demo.py."""

DEMO_PASSWORD = "demo-kalender"

# (email, name): Anna is Demo AB's One X administrator, Björn a One X user who is not.
DEMO_PEOPLE = [
    ("anna.andersson@demo.se", "Anna Andersson"),
    ("bjorn.berg@demo.se", "Björn Berg"),
    ("asa.lind@demokommun.se", "Åsa Lind"),  # Demo Kommun's One X administrator
]


def demo_identities() -> list[dict]:
    return [
        {"email": email, "password": DEMO_PASSWORD, "name": name, "email_verified": True}
        for email, name in DEMO_PEOPLE
    ]
