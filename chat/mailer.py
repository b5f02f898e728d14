"""Sending the sign-in code: through SMTP with aiosmtplib, or printed to the terminal."""

from __future__ import annotations

import logging
import sys
from email.message import EmailMessage
from email.utils import make_msgid
from html import escape
from urllib.parse import urlsplit

import aiosmtplib

from chat.settings import SmtpTarget

log = logging.getLogger("chat.mail")


class MailError(Exception):
    """The code could not be handed to the mail server."""


def code_email(sender: str, to: str, code: str, ttl_seconds: int, public_url: str) -> EmailMessage:
    """The code email. The site's name and link come from CHAT_PUBLIC_URL, never from the
    request: a forged Host header must not be able to put its own name into our mail."""
    minutes = max(1, ttl_seconds // 60)
    site = urlsplit(public_url).netloc
    link = f"{public_url}/login"
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = f"{code} is your sign-in code"
    message["Message-ID"] = make_msgid(domain=urlsplit(public_url).hostname or "chat.local")
    text = (
        f"Your sign-in code for {site} is:\n\n    {code}\n\n"
        f"Enter it on the page that asked for it ({link}).\n"
        f"It is valid for {minutes} minutes and works once.\n"
        "If you did not ask for it, ignore this email: nobody can sign in without the code.\n"
    )
    message.set_content(text)
    message.add_alternative(
        f"""<!doctype html><html><body style="font-family:sans-serif">
<p>Your sign-in code for <a href="{escape(link)}">{escape(site)}</a> is:</p>
<p style="font-size:28px;font-weight:bold;letter-spacing:4px">{code}</p>
<p>It is valid for {minutes} minutes and works once.</p>
<p style="color:#666">If you did not ask for it, ignore this email:
nobody can sign in without the code.</p>
</body></html>""",
        subtype="html",
    )
    return message


async def send(message: EmailMessage, target: SmtpTarget | None, timeout: float) -> None:
    """Deliver to the SMTP server, or print when no server is configured (development)."""
    if target is None:
        _print_to_console(message)
        return
    try:
        await aiosmtplib.send(
            message,
            hostname=target.hostname,
            port=target.port,
            username=target.username,
            password=target.password,
            use_tls=target.security == "tls",
            start_tls=target.security == "starttls",
            timeout=timeout,
        )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        raise MailError(f"{type(error).__name__}: {error}") from error


def _print_to_console(message: EmailMessage) -> None:
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    sys.stdout.write(
        "\n----- email (console mailer: set CHAT_SMTP_URL to send real mail) -----\n"
        f"To: {message['To']}\nSubject: {message['Subject']}\n\n{text}"
        "------------------------------------------------------------------------\n"
    )
    sys.stdout.flush()
