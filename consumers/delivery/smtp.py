"""E-mail through an SMTP relay with aiosmtplib: the only module that imports it.

Connections are pooled (one per concurrent send) and reused across messages. The Message-ID is
derived from the CampaignMessage id, so a resend after a crash carries the same Message-ID and
mail clients that deduplicate on it show one message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from email.header import Header
from email.utils import formatdate, parseaddr

import aiosmtplib

from consumers.delivery.channels import Outcome, OutgoingMessage, SendResult
from filas.settings import SmtpChannelSettings


def message_id_header(message_id: str, domain: str) -> str:
    return f"<{message_id}@{domain}>"


def build_email(message: OutgoingMessage, settings: SmtpChannelSettings) -> bytes:
    """The mail as RFC 5322 bytes: UTF-8 text body in base64, RFC 2047 subject when not ASCII.

    Rendered by hand: the stdlib's policies re-parse and re-fold every header, which cost more
    CPU than the rest of a send (profiled: ~1 ms per mail). Header values come from the
    message, so CR/LF in them (header injection) is refused by the caller (``header_safe``).
    """
    subject = message.subject or ""
    if not subject.isascii():
        subject = Header(subject, "utf-8").encode()
    body = base64.encodebytes(message.body.encode()).decode().replace("\n", "\r\n")
    head = (
        f"From: {settings.sender}\r\n"
        f"To: {message.address}\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        f"Message-ID: {message_id_header(message.message_id, settings.message_id_domain)}\r\n"
        f"X-Filas-Campaign: {message.campaign_id}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    )
    return (head + body).encode()


def header_safe(message: OutgoingMessage) -> bool:
    return not any("\r" in v or "\n" in v for v in (message.address, message.subject or ""))


def classify_code(code: int) -> Outcome:
    return Outcome.PERMANENT if 500 <= code < 600 else Outcome.TEMPORARY


class SmtpChannel:
    def __init__(self, settings: SmtpChannelSettings) -> None:
        self.settings = settings
        self._idle: list[aiosmtplib.SMTP] = []
        self._sender = parseaddr(settings.sender)[1] or settings.sender

    @property
    def provider(self) -> str:
        return self.settings.provider

    @property
    def dependency(self) -> str:
        return "smtp"

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=s.timeout_s,
            use_tls=s.use_tls,
            start_tls=s.start_tls,
        )
        await client.connect()
        if s.username is not None and s.password is not None:
            await client.login(s.username, s.password.get_secret_value())
        if client.is_ehlo_or_helo_needed:
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                await client.helo()
        return client

    async def _transaction(self, client: aiosmtplib.SMTP, message: OutgoingMessage) -> str:
        """MAIL, RCPT, DATA for one recipient; the relay's final answer text.

        ``SMTP.sendmail`` parsed the sender and the recipient twice each with
        ``email.utils.parseaddr`` (the largest Python cost of a send in profiles); both are
        plain mailboxes here (the sender parsed once at start, CR/LF refused by
        ``header_safe``), so the commands are written directly. Errors raise aiosmtplib's
        exceptions, as sendmail did; the caller drops the connection on any of them.
        """
        utf8 = not message.address.isascii()
        if utf8 and not client.supports_extension("smtputf8"):
            # An internationalised mailbox (fábio@...) needs the relay's SMTPUTF8 (RFC 6531).
            raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
        encoding = "utf-8" if utf8 else "ascii"
        content = build_email(message, self.settings)
        mail = [b"MAIL", b"FROM:<" + self._sender.encode(encoding) + b">"]
        if client.supports_extension("size"):
            mail.append(b"SIZE=%d" % len(content))
        if utf8:
            mail.append(b"SMTPUTF8")
        response = await client.execute_command(*mail, timeout=None)
        if response.code != 250:
            raise aiosmtplib.SMTPSenderRefused(response.code, response.message, self._sender)
        rcpt = b"TO:<" + message.address.encode(encoding) + b">"
        response = await client.execute_command(b"RCPT", rcpt, timeout=None)
        if response.code not in (250, 251):
            refused = aiosmtplib.SMTPRecipientRefused(
                response.code, response.message, message.address
            )
            raise aiosmtplib.SMTPRecipientsRefused([refused])
        return (await client.data(content, timeout=None)).message

    async def send(self, message: OutgoingMessage) -> SendResult:
        if not header_safe(message):
            return SendResult(Outcome.PERMANENT, None, "address or subject contains CR/LF")
        client = self._idle.pop() if self._idle else None
        reuse = True
        try:
            if client is None or not client.is_connected:
                client = await self._connect()
            # One deadline for the whole transaction instead of aiosmtplib's asyncio.wait_for
            # per command (four per mail; profiled). Expiry raises TimeoutError: temporary.
            async with asyncio.timeout(self.settings.timeout_s):
                response = await self._transaction(client, message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            reuse = False
            first = exc.recipients[0] if exc.recipients else None
            code = first.code if first is not None else 550
            text = first.message if first is not None else str(exc)
            return SendResult(classify_code(code), str(code), text)
        except aiosmtplib.SMTPResponseException as exc:
            reuse = False
            return SendResult(classify_code(exc.code), str(exc.code), exc.message)
        except aiosmtplib.SMTPNotSupported as exc:
            # Resending will not teach the relay SMTPUTF8: this message cannot go this way.
            return SendResult(Outcome.PERMANENT, None, f"relay: {exc}")
        except (UnicodeError, ValueError) as exc:
            # An address aiosmtplib cannot encode or parse: the record's data, not the relay.
            reuse = False
            return SendResult(Outcome.PERMANENT, None, f"bad address: {exc}")
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            reuse = False
            return SendResult(Outcome.TEMPORARY, None, f"{type(exc).__name__}: {exc}")
        finally:
            if client is not None:
                if reuse and client.is_connected:
                    self._idle.append(client)
                else:
                    with contextlib.suppress(Exception):
                        client.close()
        return SendResult(Outcome.SENT, "250", response, provider_message_id=response)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            with contextlib.suppress(Exception):
                await client.quit()
