"""EWS sandbox: an Exchange Server (on-premises) stand-in on https://127.0.0.1:8012/EWS/Exchange.asmx.

`python -m sandbox.ews [--port 8012] [--ca-file FILE] [--no-demo]`. NTLM (or Basic) in front of
SOAP 1.1; GetFolder, FindItem with CalendarView, GetItem, Subscribe/Unsubscribe with push
SendNotification deliveries, ResolveNames, ExpandDL; /_sandbox/ controls. See server.py.
"""

from .auth import DEFAULT_PASSWORD, DEFAULT_USERNAME
from .knobs import BUILDS, Knobs
from .sandbox import EwsSandbox
from .server import EWS_PATH, EwsServer

__all__ = [
    "BUILDS",
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "EWS_PATH",
    "EwsSandbox",
    "EwsServer",
    "Knobs",
]
