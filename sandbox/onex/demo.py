"""The demo companies One X serves out of the box: Demo AB (on Exchange Online) and Demo
Kommun (on Exchange on-premises, the EWS sandbox's people), their people and absence reasons."""

from sandbox.ews import demo as ews_demo

DEMO_COMPANY_ID = "demo-ab"
KOMMUN_COMPANY_ID = "demo-kommun"

REASONS = [
    ("MOTE", "Möte", "Meeting"),
    ("LUNCH", "Lunch", "Lunch"),
    ("GATT_FOR_DAGEN", "Gått för dagen", "Gone for the day"),
    ("SEMESTER", "Semester", "Vacation"),
    ("SJUK", "Sjuk", "Sick"),
    ("TJANSTERESA", "Tjänsteresa", "Business trip"),
    ("UTBILDNING", "Utbildning", "Training"),
    ("LEDIG", "Ledig", "Day off"),
    ("UPPTAGEN", "Upptagen", "Busy"),
    ("FRANVARANDE", "Frånvarande", "Away"),
]

# (subscriptionId, email, displayName, extension, msisdn, diversion, openDiversion, admin)
PEOPLE = [
    (
        "sub-anna",
        "anna.andersson@demo.se",
        "Anna Andersson",
        "201",
        "+46701234501",
        True,
        True,
        True,
    ),
    ("sub-bjorn", "bjorn.berg@demo.se", "Björn Berg", "202", "+46701234502", True, False, False),
    (
        "sub-cecilia",
        "cecilia.carlsson@demo.se",
        "Cecilia Carlsson",
        "203",
        "+46701234503",
        False,
        False,
        False,
    ),
    ("sub-david", "david.dahl@demo.se", "David Dahl", "204", "+46701234504", True, False, False),
    ("sub-eva", "eva.ek@demo.se", "Eva Ek", "205", "+46701234505", False, False, False),
    (
        "sub-fredrik",
        "fredrik.forsberg@demo.se",
        "Fredrik Forsberg",
        "206",
        "+46701234506",
        True,
        True,
        False,
    ),
]


def demo_company():
    return {
        "companyId": DEMO_COMPANY_ID,
        "name": "Demo AB",
        "subscriptions": [
            {
                "subscriptionId": sid,
                "email": email,
                "displayName": name,
                "extension": ext,
                "msisdn": msisdn,
                "features": {"absence": True, "diversion": div, "openDiversion": open_div},
                "admin": admin,
            }
            for sid, email, name, ext, msisdn, div, open_div, admin in PEOPLE
        ],
        "reasons": [
            {"code": code, "label": {"sv": sv, "en": en}, "diversionAllowed": True, "active": True}
            for code, sv, en in REASONS
        ],
    }


def kommun_company():
    """Demo Kommun: the EWS sandbox's five people; the first is the company's administrator."""
    return {
        "companyId": KOMMUN_COMPANY_ID,
        "name": ews_demo.COMPANY,
        "subscriptions": [
            {
                "subscriptionId": f"sub-kommun-{number}",
                "email": email,
                "displayName": name,
                "extension": extension,
                "msisdn": mobile,
                "features": {"absence": True, "diversion": True, "openDiversion": number == 1},
                "admin": number == 1,
            }
            for number, (email, name, extension, mobile) in enumerate(ews_demo.PEOPLE, start=1)
        ],
        "reasons": demo_company()["reasons"],
    }


def demo_companies():
    return [demo_company(), kommun_company()]
