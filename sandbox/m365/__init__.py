"""Microsoft 365 sandbox: sign-in, admin consent and Microsoft Graph on https://127.0.0.1:8011.

`python -m sandbox.m365 [--port 8011] [--state FILE] [--ca-file FILE]`. See server.py.
"""
