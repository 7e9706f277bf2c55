"""CORS for the sandboxes' add-in endpoints (/_sandbox/addin/*): the Office.js stub calls them
from the task pane's page, another origin. No other sandbox endpoint answers cross-origin."""

ADDIN_PREFIX = "/_sandbox/addin/"
ALLOW = {"Access-Control-Allow-Origin": "*"}
PREFLIGHT = {
    **ALLOW,
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
    "Access-Control-Max-Age": "600",
}


def is_addin_path(path: str) -> bool:
    return path.startswith(ADDIN_PREFIX)
