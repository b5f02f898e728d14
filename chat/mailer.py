"""Sending email (codes, notices): through SMTP with aiosmtplib, or printed to the terminal."""

from __future__ import annotations

import logging
import sys
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import urlsplit

import aiosmtplib
from quart import Quart

from chat import addresses, i18n
from chat.fragments import render_fragment
from chat.i18n import Variant
from chat.settings import SmtpTarget

log = logging.getLogger("chat.mail")


class MailError(Exception):
    """The code could not be handed to the mail server."""


class NeedsSmtpUtf8(MailError):
    """The address needs SMTPUTF8 (a non-ASCII local part) and the mail server lacks it."""


async def code_email(
    sender: str, to: str, code: str, ttl_seconds: int, public_url: str, kind: str = "code"
) -> EmailMessage:
    """The code email, in the language in force (the page that asked for it): `kind` "code"
    to sign in, "delete_code" to delete the account (templates/email/<kind>*).

    The site's name and link come from CHAT_PUBLIC_URL, never from the request: a forged Host
    header must not be able to put its own name into our mail.
    """
    context = {
        "code": code,
        "site": urlsplit(public_url).netloc,
        "link": f"{public_url}/login" if kind == "code" else f"{public_url}/settings",
        "minutes": max(1, ttl_seconds // 60),
    }
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = (await render_fragment(f"email/{kind}_subject.txt", **context)).strip()
    message["Message-ID"] = make_msgid(domain=urlsplit(public_url).hostname or "chat.local")
    message.set_content(await render_fragment(f"email/{kind}.txt", **context))
    message.add_alternative(await render_fragment(f"email/{kind}.html", **context), subtype="html")
    return message


async def person_email(
    app: Quart,
    to: str,
    template: str,
    variant: Variant,
    context: dict[str, object],
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    """An email to one person, in their language and time zone (`variant`), from
    templates/email/<template>_subject.txt, <template>.txt and <template>.html."""
    public = app.config["PUBLIC_URL"]
    address = addresses.normalise(to, [to.rpartition("@")[2]])
    message = EmailMessage()
    message["From"] = app.config["MAIL_FROM"]
    message["To"] = address.deliver_to if address else to
    message["Message-ID"] = make_msgid(domain=urlsplit(public).hostname or "chat.local")
    for name, value in (headers or {}).items():
        message[name] = value
    async with app.app_context():
        with i18n.use(variant):
            subject = await render_fragment(f"email/{template}_subject.txt", **context)
            message["Subject"] = " ".join(subject.split())
            message.set_content(await render_fragment(f"email/{template}.txt", **context))
            html = await render_fragment(f"email/{template}.html", **context)
    message.add_alternative(html, subtype="html")
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
    except aiosmtplib.SMTPNotSupported as error:
        raise NeedsSmtpUtf8(str(error)) from error
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
