"""SOAP 1.1 and EWS XML: namespaces, element builders, envelopes and faults.

Everything the sandbox sends is built here with lxml, in the element order Microsoft's schema
(messages.xsd / types.xsd) demands, so the tests can validate each answer against it.
"""

from datetime import UTC, datetime

from lxml import etree

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
NSMAP = {"s": SOAP, "m": M, "t": T}


def m(tag: str, text=None, **attrs) -> etree._Element:
    return _element(M, tag, text, attrs)


def t(tag: str, text=None, **attrs) -> etree._Element:
    return _element(T, tag, text, attrs)


def _element(ns, tag, text, attrs):
    element = etree.Element(f"{{{ns}}}{tag}", {k: _text(v) for k, v in attrs.items()})
    if text is not None:
        element.text = _text(text)
    return element


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso(value)
    return str(value)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def child(parent, element):
    parent.append(element)
    return element


def find(element, path: str):
    """`find` with the m:/t:/s: prefixes."""
    return element.find(path, NSMAP) if element is not None else None


def findall(element, path: str):
    return element.findall(path, NSMAP) if element is not None else []


def text_of(element, path: str, default=None):
    found = find(element, path)
    return found.text if found is not None and found.text is not None else default


def envelope(body_element, version_info=None) -> bytes:
    root = etree.Element(f"{{{SOAP}}}Envelope", nsmap=NSMAP)
    if version_info is not None:
        header = etree.SubElement(root, f"{{{SOAP}}}Header")
        header.append(version_info)
    body = etree.SubElement(root, f"{{{SOAP}}}Body")
    body.append(body_element)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def server_version_info(build: tuple[int, int, int, int], version: str) -> etree._Element:
    major, minor, major_build, minor_build = build
    return t(
        "ServerVersionInfo",
        MajorVersion=major,
        MinorVersion=minor,
        MajorBuildNumber=major_build,
        MinorBuildNumber=minor_build,
        Version=version,
    )


def fault(code: str, message: str, values: dict | None = None) -> etree._Element:
    """A SOAP fault the way Exchange sends header-level errors (impersonation, version, busy):
    faultcode in the types namespace, the code and message again in the errors namespace and
    extra data as t:MessageXml/t:Value."""
    element = etree.Element(f"{{{SOAP}}}Fault")
    faultcode = etree.SubElement(element, "faultcode", nsmap={"a": T})
    faultcode.text = f"a:{code}"
    faultstring = etree.SubElement(element, "faultstring")
    faultstring.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
    faultstring.text = message
    detail = etree.SubElement(element, "detail")
    etree.SubElement(detail, f"{{{E}}}ResponseCode", nsmap={"e": E}).text = code
    etree.SubElement(detail, f"{{{E}}}Message", nsmap={"e": E}).text = message
    if values:
        message_xml = child(detail, t("MessageXml"))
        for name, value in values.items():
            message_xml.append(t("Value", value, Name=name))
    return element


def response_message(tag: str, code: str = "NoError", message: str | None = None, values=None):
    """`m:<tag>` with ResponseClass, MessageText, ResponseCode and MessageXml (for errors)."""
    element = m(tag, ResponseClass="Success" if code == "NoError" else "Error")
    if code != "NoError":
        element.append(m("MessageText", message or code))
    element.append(m("ResponseCode", code))
    if code != "NoError":
        element.append(m("DescriptiveLinkKey", 0))
        if values:
            message_xml = child(element, m("MessageXml"))
            for name, value in values.items():
                message_xml.append(t("Value", value, Name=name))
    return element


def response(operation: str, messages) -> etree._Element:
    """`m:<Op>Response/m:ResponseMessages/...`."""
    element = m(f"{operation}Response")
    container = child(element, m("ResponseMessages"))
    for message in messages:
        container.append(message)
    return element
