"""The Outlook add-in's manifest (/addin/manifest.xml): well-formed, valid against Microsoft's
schema at the top level, every element in the order the schemas require, this deployment's
URLs and add-in id, https only in production, Swedish with English overrides, a button that
opens the task pane on the appointments a user organises, real icons, and a download."""

import struct
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.test import override_settings
from django.urls import reverse
from lxml import etree

from calendarsync.addin import manifest
from tests import addin_icons

SCHEMA = Path(__file__).parent / "data" / "addin-schema" / "offappmanifest-1.1.xsd"
APP = "http://schemas.microsoft.com/office/appforoffice/1.1"
VO_1_0 = "http://schemas.microsoft.com/office/mailappversionoverrides"
VO_1_1 = "http://schemas.microsoft.com/office/mailappversionoverrides/1.1"
BT = "http://schemas.microsoft.com/office/officeappbasictypes/1.0"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
NS = {"o": APP, "vo": VO_1_0, "vo11": VO_1_1, "bt": BT}
BASE = "https://kalender.example.se"
ADDIN_ID = "0b6c4a52-7d1e-4f3a-9c2b-8e5d7f1a2b3c"

# The children each element may have, in the order they must come. Copied from Microsoft's
# "How to find the proper order of manifest elements"
# (https://learn.microsoft.com/office/dev/add-ins/develop/manifest-element-ordering: "Basic
# mail add-in element ordering" and "Mail add-in element ordering within VersionOverrides
# Ver. 1.0 / Ver. 1.1"), which is read from the schemas. The top level is also validated
# against the schema itself (tests/data/addin-schema/); VersionOverrides' own schemas are
# not vendored (MailAppVersionOverridesV1_0.xsd and OfficeAppBasicTypesV1_0.xsd were not
# found published in a repository), so its order is checked here alone.
OVERRIDES_1_0 = ["Description", "Requirements", "Hosts", "Resources", "VersionOverrides"]
OVERRIDES_1_1 = [
    "Description",
    "Requirements",
    "Hosts",
    "Resources",
    "WebApplicationInfo",
    "EquivalentAddins",
    "ConnectedServiceControls",
    "ExtendedPermissions",
]
ORDER = {
    "OfficeApp": [
        "Id",
        "AlternateId",
        "Version",
        "ProviderName",
        "DefaultLocale",
        "DisplayName",
        "Description",
        "IconUrl",
        "HighResolutionIconUrl",
        "SupportUrl",
        "AppDomains",
        "Hosts",
        "Requirements",
        "FormSettings",
        "Permissions",
        "Rule",
        "DisableEntityHighlighting",
        "VersionOverrides",
    ],
    "DisplayName": ["Override"],
    "Description": ["Override"],
    "AppDomains": ["AppDomain"],
    "Hosts": ["Host"],
    "Requirements": ["Sets"],
    "Sets": ["Set"],
    "FormSettings": ["Form"],
    "Form": ["DesktopSettings", "TabletSettings", "PhoneSettings"],
    "DesktopSettings": ["SourceLocation", "RequestedHeight"],
    "SourceLocation": ["Override"],
    "Host": ["DesktopFormFactor", "MobileFormFactor"],
    "DesktopFormFactor": ["ExtensionPoint"],
    "ExtensionPoint": ["OfficeTab", "CustomTab", "OfficeMenu", "SourceLocation", "Label"],
    "OfficeTab": ["Group"],
    "Group": ["Label", "Tooltip", "Control"],
    "Control": ["Label", "Supertip", "Icon", "Action", "Items"],
    "Supertip": ["Title", "Description"],
    "Icon": ["Image"],
    "Action": ["TaskpaneId", "SourceLocation", "Title", "FunctionName"],
    "Resources": ["Images", "Urls", "ShortStrings", "LongStrings"],
    "Images": ["Image"],
    "Image": ["Override"],
    "Urls": ["Url"],
    "Url": ["Override"],
    "ShortStrings": ["String"],
    "LongStrings": ["String"],
    "String": ["Override"],
}


def _local(element) -> str:
    return etree.QName(element).localname


def order_problems(root) -> list[str]:
    """Every element whose children are not all allowed, in the required order."""
    problems = []
    for element in root.iter(etree.Element):
        children = [child for child in element if isinstance(child.tag, str)]
        if not children:
            continue
        name = _local(element)
        if name == "VersionOverrides":
            namespace = etree.QName(element).namespace
            allowed = OVERRIDES_1_1 if namespace == VO_1_1 else OVERRIDES_1_0
        elif name in ORDER:
            allowed = ORDER[name]
        else:
            problems.append(f"{name} has children, but no known order")
            continue
        positions = []
        for child in children:
            if _local(child) not in allowed:
                problems.append(f"{_local(child)} may not be a child of {name}")
            else:
                positions.append(allowed.index(_local(child)))
        if positions != sorted(positions):
            problems.append(f"{name}: {[_local(child) for child in children]} out of order")
    return problems


def _get(client, **params):
    return client.get(reverse("addin:manifest"), params)


def _root(client):
    return etree.fromstring(_get(client).content)


@pytest.fixture
def deployment(settings):
    settings.PUBLIC_BASE_URL = BASE
    settings.MS_ADDIN_ID = ADDIN_ID
    return settings


@pytest.fixture(scope="module")
def schema():
    return etree.XMLSchema(etree.parse(str(SCHEMA)))


def test_it_is_well_formed_xml_served_as_application_xml(client):
    response = _get(client)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/xml")
    assert "Content-Disposition" not in response  # shown, not downloaded
    assert response.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = etree.fromstring(response.content)
    assert root.tag == f"{{{APP}}}OfficeApp"
    assert root.get(XSI_TYPE) == "MailApp"


def test_it_needs_no_sign_in_and_answers_only_get(client):
    # The admin centers may fetch it themselves from its address.
    assert _get(client).status_code == 200
    assert client.post(reverse("addin:manifest")).status_code == 405


def test_download_names_the_file(client):
    response = _get(client, download="1")
    assert response["Content-Disposition"] == (
        'attachment; filename="mss-kalenderkoppling-manifest.xml"'
    )
    etree.fromstring(response.content)


def test_its_top_level_is_valid_against_microsofts_schema(client, deployment, schema):
    root = _root(client)
    # VersionOverrides is checked below against the documented order (its schema is not here).
    for overrides in root.findall("vo:VersionOverrides", NS):
        root.remove(overrides)
    assert schema.validate(root), schema.error_log


def test_the_schema_refuses_a_misplaced_element(client, schema):
    root = _root(client)
    for overrides in root.findall("vo:VersionOverrides", NS):
        root.remove(overrides)
    permissions = root.find("o:Permissions", NS)
    root.remove(permissions)
    root.insert(1, permissions)  # right after Id
    assert not schema.validate(root)
    assert "Permissions" in str(schema.error_log)


def test_every_element_is_in_the_order_microsofts_schemas_require(client, deployment):
    root = _root(client)
    assert order_problems(root) == []
    # Both VersionOverrides are there: 1.1 nested at the end of 1.0, as Microsoft shows.
    outer = root.find("vo:VersionOverrides", NS)
    assert outer.get(XSI_TYPE) == "VersionOverridesV1_0"
    inner = outer[-1]
    assert inner.tag == f"{{{VO_1_1}}}VersionOverrides"
    assert inner.get(XSI_TYPE) == "VersionOverridesV1_1"


def test_the_order_check_catches_elements_out_of_order(client):
    root = _root(client)
    control = root.find(".//vo11:Control", NS)
    control.append(control.find("vo11:Label", NS))  # Label after Action
    resources = root.find(".//vo11:Resources", NS)
    resources.insert(0, resources.find("bt:LongStrings", NS))
    problems = order_problems(root)
    assert any(problem.startswith("Control:") for problem in problems)
    assert any(problem.startswith("Resources:") for problem in problems)


def _urls(root) -> list[str]:
    values = [value for element in root.iter(etree.Element) for value in element.attrib.values()]
    values += [element.text for element in root.iter(etree.Element) if element.text]
    return [value.strip() for value in values if value.strip().startswith(("http:", "https:"))]


def test_it_carries_the_deployments_urls_and_add_in_id(client, deployment):
    root = _root(client)
    assert root.findtext("o:Id", namespaces=NS) == ADDIN_ID
    assert root.findtext("o:Version", namespaces=NS) == manifest.VERSION
    assert root.findtext("o:ProviderName", namespaces=NS) == "Telenor"
    assert root.findtext("o:DefaultLocale", namespaces=NS) == "sv-SE"
    assert root.findtext("o:AppDomains/o:AppDomain", namespaces=NS) == BASE
    pane = root.find("o:FormSettings/o:Form/o:DesktopSettings/o:SourceLocation", NS)
    assert pane.get("DefaultValue") == f"{BASE}/addin/taskpane/?lang=sv"
    assert pane.find("o:Override", NS).attrib == {
        "Locale": "en-US",
        "Value": f"{BASE}/addin/taskpane/?lang=en",
    }
    assert manifest.taskpane_url() == f"{BASE}/addin/taskpane/"  # the identity token's aud
    assert manifest.manifest_url() == f"{BASE}/addin/manifest.xml"
    urls = _urls(root)
    assert len(urls) > 10
    assert all(url.startswith(BASE + "/") or url == BASE for url in urls), urls


@override_settings(PRODUCTION=True, PUBLIC_BASE_URL=BASE)
def test_in_production_every_url_is_https_under_the_public_base_url(client):
    urls = _urls(_root(client))
    assert urls
    assert [url for url in urls if not url.startswith(f"{BASE}/") and url != BASE] == []
    assert all(url.startswith("https://") for url in urls)


def test_it_asks_for_mailbox_1_1_and_read_write_item_on_appointments(client):
    root = _root(client)
    sets = root.find("o:Requirements/o:Sets/o:Set", NS)
    assert (sets.get("Name"), sets.get("MinVersion")) == ("Mailbox", "1.1")
    assert root.findtext("o:Permissions", namespaces=NS) == "ReadWriteItem"
    assert root.find("o:Hosts/o:Host", NS).get("Name") == "Mailbox"
    rule = root.find("o:Rule", NS)
    assert (rule.get(XSI_TYPE), rule.get("ItemType"), rule.get("FormType")) == (
        "ItemIs",
        "Appointment",
        "Edit",
    )
    assert root.find("o:FormSettings/o:Form", NS).get(XSI_TYPE) == "ItemEdit"


@pytest.mark.parametrize("overrides", ["vo", "vo11"])
def test_the_button_telefonstatus_opens_the_task_pane_for_the_organiser(client, overrides):
    root = _root(client)
    path = "vo:VersionOverrides" + ("/vo11:VersionOverrides" if overrides == "vo11" else "")
    section = root.find(path, NS)
    prefix = f"{overrides}:"
    host = section.find(f"{prefix}Hosts/{prefix}Host", NS)
    assert host.get(XSI_TYPE) == "MailHost"
    point = host.find(f"{prefix}DesktopFormFactor/{prefix}ExtensionPoint", NS)
    assert point.get(XSI_TYPE) == "AppointmentOrganizerCommandSurface"
    control = point.find(f".//{prefix}Control", NS)
    assert control.get(XSI_TYPE) == "Button"
    action = control.find(f"{prefix}Action", NS)
    assert action.get(XSI_TYPE) == "ShowTaskpane"
    resources = section.find(f"{prefix}Resources", NS)

    def resource(kind, resid):
        found = resources.find(f"bt:{kind}/*[@id='{resid}']", NS)
        assert found is not None, resid
        return found

    label = resource("ShortStrings", control.find(f"{prefix}Label", NS).get("resid"))
    assert label.get("DefaultValue") == "Telefonstatus"
    assert label.find("bt:Override", NS).attrib == {"Locale": "en-US", "Value": "Phone status"}
    url = resource("Urls", action.find(f"{prefix}SourceLocation", NS).get("resid"))
    assert url.get("DefaultValue") == manifest.taskpane_url() + "?lang=sv"
    assert url.find("bt:Override", NS).get("Value") == manifest.taskpane_url() + "?lang=en"
    sizes = {
        image.get("size"): resource("Images", image.get("resid")).get("DefaultValue")
        for image in control.findall(f"{prefix}Icon/bt:Image", NS)
    }
    assert sizes == {str(size): manifest.icon_url(size) for size in (16, 32, 80)}
    sets = section.find(f"{prefix}Requirements/bt:Sets", NS)
    assert sets.get("DefaultMinVersion") == "1.3"  # add-in commands need Mailbox 1.3


def test_every_resource_reference_resolves_and_ids_are_short(client):
    root = _root(client)
    for section in (
        root.find("vo:VersionOverrides", NS),
        root.find("vo:VersionOverrides/vo11:VersionOverrides", NS),
    ):
        # Its own elements, not those of a VersionOverrides nested in it.
        own = [
            element
            for element in section.iter(etree.Element)
            if next(
                element.iterancestors(
                    f"{{{VO_1_0}}}VersionOverrides", f"{{{VO_1_1}}}VersionOverrides"
                ),
                section,
            )
            is section
        ]
        ids = [element.get("id") for element in own if element.get("id")]
        assert len(ids) == len(set(ids))
        assert all(len(identifier) <= 32 for identifier in ids)
        defined = {element.get("id") for element in own if etree.QName(element).namespace == BT}
        referenced = {element.get("resid") for element in own if element.get("resid")}
        assert referenced and referenced <= defined


def test_every_text_is_swedish_with_an_english_override(client):
    root = _root(client)
    texts = root.findall("o:DisplayName", NS) + root.findall("o:Description", NS)
    texts += root.findall(".//bt:String", NS) + root.findall(".//bt:Url", NS)
    assert len(texts) == 2 + 2 * 4  # 3 strings and 1 URL in each VersionOverrides
    for text in texts:
        overrides = [child for child in text if _local(child) == "Override"]
        assert [override.get("Locale") for override in overrides] == ["en-US"], text.tag
        assert overrides[0].get("Value") and text.get("DefaultValue")
    assert root.find("o:DisplayName", NS).get("DefaultValue") == "MSS Kalenderkoppling"
    description = root.find("o:Description", NS)
    assert "bokning" in description.get("DefaultValue")
    assert "booking" in description.find("o:Override", NS).get("Value")
    # The schema's limits: labels 32, short strings 125, long strings 250 characters.
    for string in root.findall(".//bt:ShortStrings/bt:String", NS):
        assert len(string.get("DefaultValue")) <= 32
    for string in root.findall(".//bt:LongStrings/bt:String", NS):
        assert len(string.get("DefaultValue")) <= 250


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    return struct.unpack(">II", data[16:24])


def test_every_icon_it_names_is_a_png_of_its_stated_size(client):
    root = _root(client)
    stated = {
        manifest.ICON_SIZE: root.find("o:IconUrl", NS).get("DefaultValue"),
        manifest.HIGH_RESOLUTION_ICON_SIZE: root.find("o:HighResolutionIconUrl", NS).get(
            "DefaultValue"
        ),
    }
    for image in root.findall(".//bt:Images/bt:Image", NS):
        size = int(image.get("id").split(".")[1].split("x")[0])
        stated[size] = image.get("DefaultValue")
    assert sorted(stated) == [16, 32, 64, 80, 128]
    for size, url in stated.items():
        path = finders.find(url.split("/static/", 1)[1])
        assert path, url
        data = Path(path).read_bytes()
        assert _png_size(data) == (size, size)
        assert len(data) < 4096  # small enough to commit


def test_the_committed_icons_are_what_the_generator_draws():
    for size in addin_icons.SIZES:
        committed = (addin_icons.STATIC_DIR / f"icon-{size}.png").read_bytes()
        assert committed == addin_icons.png(size), f"run: python -m tests.addin_icons ({size})"
