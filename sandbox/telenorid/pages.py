"""The pages a person sees at Telenor ID: the login form, an error page, the logged-out page.

Swedish, styled after Telenor ID (blue header, "Telenor ID" wordmark in text, one clean form).
Inline CSS is fine here: the pages' Content-Security-Policy allows inline styles and nothing else.
"""

from html import escape

BLUE = "#0b6bde"

STYLE = f"""
*{{box-sizing:border-box}}
body{{margin:0;font-family:"Telenor",system-ui,-apple-system,"Segoe UI",sans-serif;
color:#00005a;background:#f2f5fa}}
header{{background:{BLUE};padding:.9rem 1.5rem}}
.wordmark{{color:#fff;font-size:1.35rem;font-weight:700;letter-spacing:.01em;text-decoration:none}}
.wordmark span{{font-weight:400;opacity:.9}}
main{{max-width:26rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:.75rem;
box-shadow:0 2px 12px rgba(0,0,90,.08)}}
h1{{font-size:1.5rem;margin:0 0 .4rem}}
p.lead{{margin:0 0 1.5rem;color:#4a4a7a}}
label{{display:block;font-weight:600;margin:1rem 0 .35rem}}
input{{width:100%;padding:.75rem .85rem;font-size:1rem;border:1px solid #b8c2d6;
border-radius:.5rem;color:inherit}}
input:focus{{outline:2px solid {BLUE};outline-offset:1px;border-color:{BLUE}}}
button{{width:100%;margin-top:1.6rem;padding:.8rem;font-size:1rem;font-weight:600;color:#fff;
background:{BLUE};border:0;border-radius:2rem;cursor:pointer}}
button:hover{{background:#0955b3}}
.error{{margin:0 0 1rem;padding:.7rem .85rem;border-radius:.5rem;background:#fdecec;
color:#a1121a;border:1px solid #f3b7ba}}
.detail{{font-family:ui-monospace,monospace;font-size:.85rem;color:#4a4a7a;word-break:break-all}}
footer{{max-width:26rem;margin:0 auto 2rem;font-size:.8rem;color:#6b6b93;text-align:center}}
"""


def _page(title: str, content: str, footer: str = "") -> str:
    return (
        '<!doctype html><html lang="sv"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} – Telenor ID</title><style>{STYLE}</style></head><body>"
        '<header><span class="wordmark">Telenor <span>ID</span></span></header>'
        f"<main>{content}</main>"
        f"<footer>{footer}</footer></body></html>"
    )


def login_page(
    transaction: str,
    *,
    client_name: str,
    email: str = "",
    error: str = "",
    demo_accounts: tuple[str, ...] = (),
    demo_password: str = "",
) -> str:
    alert = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    autofocus = "password" if email else "email"
    content = (
        "<h1>Logga in med Telenor ID</h1>"
        f'<p class="lead">för att fortsätta till {escape(client_name)}</p>'
        f"{alert}"
        '<form method="post" action="/login" novalidate>'
        f'<input type="hidden" name="txn" value="{escape(transaction)}">'
        '<label for="email">E-postadress</label>'
        f'<input id="email" name="email" type="email" autocomplete="username" required '
        f'value="{escape(email)}"{" autofocus" if autofocus == "email" else ""}>'
        '<label for="password">Lösenord</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" '
        f"required{' autofocus' if autofocus == 'password' else ''}>"
        '<button id="login" type="submit">Logga in</button>'
        "</form>"
    )
    footer = "Testmiljö – inte den riktiga Telenor ID."
    if demo_accounts:
        accounts = ", ".join(escape(a) for a in demo_accounts)
        footer += f" Demokonton: {accounts} (lösenord {escape(demo_password)})."
    return _page("Logga in", content, footer)


def error_page(detail: str) -> str:
    content = (
        "<h1>Något gick fel</h1>"
        '<p class="lead">Inloggningen kunde inte genomföras. Gå tillbaka till tjänsten och '
        "försök igen.</p>"
        f'<p class="detail">{escape(detail)}</p>'
    )
    return _page("Fel", content)


def logged_out_page() -> str:
    content = (
        '<h1>Du är utloggad från Telenor ID</h1><p class="lead">Du kan stänga det här fönstret.</p>'
    )
    return _page("Utloggad", content)
