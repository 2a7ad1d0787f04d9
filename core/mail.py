"""Notices by email: a plain-text and an HTML part; a reservation's notice
carries its code as a QR image (inline in the HTML, and named as an
attachment) that the entry kiosk's scanner reads from a phone screen.
Sent over SMTP with STARTTLS, implicit TLS or neither, as configured."""

from __future__ import annotations

import html
import io
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from core.config import SmtpSettings
from core.services.notifications import DeliveryFailed, Notice, describe
from core.site import Site

QR_PIXELS_PER_MODULE = 8


def qr_png(payload: str) -> bytes:
    """The QR code of `payload` as a PNG, large enough to scan off a phone."""
    import qrcode

    code = qrcode.QRCode(
        border=4,
        box_size=QR_PIXELS_PER_MODULE,
        error_correction=qrcode.constants.ERROR_CORRECT_M,
    )
    code.add_data(payload)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image().save(out, "PNG")
    return out.getvalue()


def compose(notice: Notice, site: Site, sender: str) -> EmailMessage:
    """The email for a notice."""
    subject, text = describe(notice, site)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = notice.recipient
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="lotkeeper.invalid")
    # The notice's number: a resent notice is recognisably the same one.
    message["X-Lotkeeper-Notice"] = f"{site.id}/{notice.kind.value}/{notice.subject}"
    footer = f"\n\n{site.name}"
    message.set_content(text + footer)
    paragraphs = "".join(f"<p>{html.escape(part)}</p>" for part in text.split("\n") if part)
    code = notice.payload.get("code")
    if code:
        image_id = make_msgid(domain="lotkeeper.invalid")
        short = html.escape(str(notice.payload.get("short_code", "")))
        message.add_alternative(
            f"<html><body>{paragraphs}"
            f'<p><img src="cid:{image_id[1:-1]}" alt="Reservation code {short}" '
            f'width="240" height="240"></p><p>Code: <b>{short}</b></p>'
            f"<p>{html.escape(site.name)}</p></body></html>",
            subtype="html",
        )
        html_part = message.get_body(preferencelist=("html",))
        assert isinstance(html_part, EmailMessage)
        html_part.add_related(
            qr_png(code),
            maintype="image",
            subtype="png",
            cid=image_id,
            filename=f"reservation-{notice.payload.get('short_code', 'code')}.png",
            disposition="inline",
        )
    else:
        message.add_alternative(
            f"<html><body>{paragraphs}<p>{html.escape(site.name)}</p></body></html>",
            subtype="html",
        )
    return message


class SmtpMailer:
    """Sends notices through the configured SMTP server; a failure of any
    kind becomes `DeliveryFailed` with what went wrong, for the retry."""

    def __init__(self, settings: SmtpSettings, site: Site) -> None:
        if not settings.host:
            raise ValueError("SMTP is not configured (smtp.host)")
        self.settings = settings
        self.site = site

    def __call__(self, notice: Notice) -> None:
        self.send(compose(notice, self.site, self.settings.sender))

    def send(self, message: EmailMessage) -> None:
        s = self.settings
        where = f"{s.host}:{s.port}"
        try:
            context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryFailed(
                "cannot read smtp.ca_file {ca_file}: {reason}", ca_file=s.ca_file, reason=exc
            ) from None
        try:
            client: smtplib.SMTP
            if s.security == "tls":
                client = smtplib.SMTP_SSL(
                    s.host or "", s.port, timeout=s.timeout_seconds, context=context
                )
            else:
                client = smtplib.SMTP(s.host or "", s.port, timeout=s.timeout_seconds)
            with client:
                if s.security == "starttls":
                    client.starttls(context=context)
                if s.user:
                    password = s.password.get_secret_value() if s.password else ""
                    client.login(s.user, password)
                client.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryFailed(
                "the SMTP server {where} refused the login ({code})",
                where=where,
                code=exc.smtp_code,
            ) from None
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryFailed(
                "the SMTP server {where} refused {to}", where=where, to=message["To"]
            ) from None
        except smtplib.SMTPException as exc:
            raise DeliveryFailed(
                "SMTP error from {where}: {reason}", where=where, reason=exc
            ) from None
        except ssl.SSLError as exc:  # before OSError, of which it is one
            raise DeliveryFailed(
                "TLS with the SMTP server {where} failed ({reason}); "
                "check smtp.security and smtp.ca_file",
                where=where,
                reason=exc.reason or exc,
            ) from None
        except OSError as exc:
            raise DeliveryFailed(
                "cannot reach the SMTP server {where}: {reason}",
                where=where,
                reason=exc.strerror or exc,
            ) from None
