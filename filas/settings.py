"""The one typed settings object, built from the environment at the entrypoint.

Libraries never read environment variables: the CLI (or a test) builds ``Settings`` once and
passes it, or the section a component needs, down. Secrets are ``SecretStr`` and are revealed only
where a client library needs them (``KafkaSettings.client_config``).

Environment: prefix ``FILAS_``, nested sections with ``__``, e.g.
``FILAS_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:19092`` or ``FILAS_IXC__TOKEN=...``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"
    SSL = "SSL"


class KafkaSettings(BaseModel):
    model_config = _FROZEN

    bootstrap_servers: str = "127.0.0.1:19092"
    client_id: str = "filas"
    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-256"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    # Producer knobs the SDK exposes; acks/idempotence are fixed on purpose (see docs/decisions).
    linger_ms: int = 5
    batch_size: int = 256 * 1024
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    queue_buffering_max_messages: int = 100_000
    delivery_timeout_ms: int = 120_000
    backpressure_timeout_s: float = 30.0

    def client_config(self) -> dict[str, str | int | float | bool]:
        """librdkafka ``dot.case`` settings shared by producers, consumers and the admin client.

        The only place the SASL password is revealed.
        """
        conf: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol.value,
        }
        if self.security_protocol in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL):
            conf["sasl.mechanism"] = self.sasl_mechanism
            if self.sasl_username is not None:
                conf["sasl.username"] = self.sasl_username
            if self.sasl_password is not None:
                conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location is not None:
            conf["ssl.ca.location"] = str(self.ssl_ca_location)
        return conf


class SubjectStrategy(StrEnum):
    """How a topic's value schema maps to a registry subject (Confluent's three strategies)."""

    TOPIC_NAME = "topic_name"
    RECORD_NAME = "record_name"
    TOPIC_RECORD_NAME = "topic_record_name"


class RegistrySettings(BaseModel):
    model_config = _FROZEN

    url: str = "http://127.0.0.1:18081/apis/ccompat/v7"
    username: str | None = None
    password: SecretStr | None = None
    subject_strategy: SubjectStrategy = SubjectStrategy.TOPIC_NAME
    # Transitive: a reader on any old version can read every new record, and vice versa for
    # consumers still on an old version during a rolling deploy.
    compatibility: Literal[
        "BACKWARD",
        "BACKWARD_TRANSITIVE",
        "FORWARD",
        "FORWARD_TRANSITIVE",
        "FULL",
        "FULL_TRANSITIVE",
    ] = "FULL_TRANSITIVE"

    def client_config(self) -> dict[str, str]:
        conf = {"url": self.url}
        if self.username is not None and self.password is not None:
            conf["basic.auth.user.info"] = f"{self.username}:{self.password.get_secret_value()}"
        return conf


class ClickHouseSettings(BaseModel):
    model_config = _FROZEN

    host: str = "127.0.0.1"
    port: int = 19000
    http_port: int = 18123
    database: str = "filas"
    # Administrator (migrations, 'filas clickhouse migrate'); every client unless said below.
    user: str = "default"
    password: SecretStr = SecretStr("")
    # The sink's own user (docs/clickhouse.md#access): None runs the sink as ``user``.
    # 'filas up' creates filas_sink / filas_analyst with these passwords in its users.xml.
    sink_user: str | None = None
    sink_password: SecretStr = SecretStr("filas-sink-local")
    # Read-only analysts (profile readonly): SELECT only, INSERT/DROP refused by the server.
    analyst_user: str = "filas_analyst"
    analyst_password: SecretStr = SecretStr("filas-analyst-local")

    def as_sink(self) -> ClickHouseSettings:
        """These settings with the sink's credentials (unchanged when no sink user is set)."""
        if self.sink_user is None:
            return self
        return self.model_copy(update={"user": self.sink_user, "password": self.sink_password})

    def as_analyst(self) -> ClickHouseSettings:
        """These settings with the read-only analyst's credentials."""
        return self.model_copy(
            update={"user": self.analyst_user, "password": self.analyst_password}
        )


class IxcSettings(BaseModel):
    model_config = _FROZEN

    base_url: str = "http://127.0.0.1:18080"
    user: str = "1"
    token: SecretStr = SecretStr("")
    page_size: int = Field(default=500, ge=1, le=5000)
    # IXC installations are shared production ERPs; space requests out instead of bursting.
    min_request_interval_s: float = 0.05
    request_timeout_s: float = 10.0
    max_retries: int = 5
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    poll_interval_s: float = 30.0
    watermark_path: Path = Path(".filas/state/ixc-watermarks.json")
    # IXC writes ultima_atualizacao in the installation's local time, not UTC.
    timezone: str = "America/Sao_Paulo"
    verify_tls: bool = True


class RadiusSettings(BaseModel):
    """The RADIUS gateway (``filas radius serve``): ports, secrets, reply policy, event buffer."""

    model_config = _FROZEN

    bind_host: str = "0.0.0.0"  # noqa: S104 - a RADIUS server listens for every NAS
    auth_port: int = Field(default=1812, ge=0, le=65535)
    acct_port: int = Field(default=1813, ge=0, le=65535)
    # Secret store: Nas.secret_ref -> shared secret. The Nas record never carries the secret
    # (docs/decisions/0020), e.g. FILAS_RADIUS__NAS_SECRETS='{"ixc/nas/1/radius-secret":"..."}'.
    nas_secrets: dict[str, SecretStr] = {}
    # BlastRADIUS (CVE-2024-3596): False ignores a Nas record's opt-out and requires
    # Message-Authenticator from every NAS.
    allow_message_authenticator_opt_out: bool = True
    # UDP receive/send buffers of the gateway's sockets; the kernel caps them at
    # net.core.rmem_max / wmem_max (raise those on a production gateway).
    socket_buffer_bytes: int = 4 * 1024 * 1024
    # SO_REUSEPORT on both ports: several gateway processes share them and the kernel spreads
    # NAS flows over them (set for the workers of 'filas radius serve --workers N').
    reuse_port: bool = False
    # RFC 5080 duplicate detection: a retransmission inside this window gets the cached reply.
    duplicate_window_s: float = 5.0
    # Late payers (contract status BLOCKED): "block_pool" accepts into block_pool at
    # block_rate_limit, "reject" answers Access-Reject (reason blocked_non_payment).
    blocked_policy: Literal["block_pool", "reject"] = "reject"
    block_pool: str = "bloqueados"
    block_rate_limit: str = "256k/256k"
    # REDUCED contracts keep their session at this rate (IXC's "reduced speed" state).
    reduced_rate_limit: str = "1M/1M"
    default_pool: str | None = None
    # Juniper BNGs get rates as a dynamic service (ERX-Service-Activate:1); placeholders
    # {down_bps} {up_bps} {down_kbps} {up_kbps}. Other vendors: producers/radius/vendors.py.
    juniper_rate_service: str = "filas-rate({down_bps},{up_bps})"
    # Reject (reason simultaneous_use) a login already holding SubscriberLogin.simultaneous_use
    # live sessions, counted from radius.accounting by every gateway. A session without
    # accounting for session_stale_after_s (2 interim intervals + 1 min) no longer counts.
    enforce_simultaneous_use: bool = True
    session_stale_after_s: float = 660.0
    session_timeout_s: int = 86_400
    acct_interim_interval_s: int = 300
    # Events waiting for Kafka while it is down; beyond this the oldest are dropped and counted.
    event_buffer_max: int = Field(default=100_000, ge=1)
    # Name written into every event; None means host:pid.
    gateway_instance: str | None = None
    # Start answering only after the replica read the state topics up to their end (or this).
    replica_ready_timeout_s: float = 60.0
    # Reconnect storms (docs/decisions/0052): requests wait in one bounded queue per NAS,
    # served round robin. Over admission_max_queued in total (per port) or
    # admission_max_queued_per_nas for one NAS a request is dropped unanswered (the NAS
    # retransmits); one that waited over admission_max_age_s (keep it under the NAS timeout)
    # is dropped instead of answered late.
    admission_max_queued: int = Field(default=8192, ge=1)
    admission_max_queued_per_nas: int = Field(default=2048, ge=1)
    admission_max_age_s: float = Field(default=2.5, gt=0)
    # Requests answered per event-loop turn before the socket is read again; datagrams read
    # per readiness callback.
    admission_batch: int = Field(default=32, ge=1)
    admission_read_budget: int = Field(default=512, ge=1)
    # CoA / Disconnect (RFC 5176, 'filas radius coa'): what a contract-status event does to a
    # live session. Blocked: "disconnect" (the NAS re-authenticates into the block pool or is
    # rejected, per blocked_policy) or "coa" (block pool + block rate on the running session).
    coa_block_action: Literal["disconnect", "coa"] = "disconnect"
    # Unblocked / payment confirmed / plan change: "coa" (plan rate) or "disconnect".
    coa_unblock_action: Literal["coa", "disconnect"] = "coa"
    # Per try; a request is sent 1 + coa_retries times before the result is TIMEOUT.
    coa_timeout_s: float = Field(default=2.0, gt=0)
    coa_retries: int = Field(default=2, ge=0)
    coa_message_authenticator: bool = True
    coa_group_id: str = "filas-radius-coa"
    # Where a new consumer group starts on ixc.contract-status (old blocks must not be replayed).
    coa_start_from: Literal["latest", "earliest"] = "latest"


class IngressSettings(BaseModel):
    """Service requests: the HTTP ingress (``filas ingress serve``) and the IXC workers
    (``filas requests work``). See docs/requests.md."""

    model_config = _FROZEN

    host: str = "127.0.0.1"
    port: int = Field(default=8480, ge=0, le=65535)
    # API clients: client id -> bearer token, e.g. FILAS_INGRESS__TOKENS='{"noc":"..."}'.
    tokens: dict[str, SecretStr] = {}
    # Payment gateways: gateway id -> HMAC-SHA256 secret of their signed webhooks.
    webhook_secrets: dict[str, SecretStr] = {}
    # A webhook whose timestamp is further than this from now is refused, and a signature seen
    # within it is refused as a replay.
    replay_window_s: float = Field(default=300.0, gt=0)
    # Per client and per ingress instance: token bucket (requests/s; burst, capped at 1 s of rate).
    rate_per_s: float = Field(default=50.0, gt=0)
    rate_burst: int = Field(default=100, ge=1)
    client_rates: dict[str, float] = {}
    max_body_bytes: int = Field(default=16 * 1024, ge=256)
    # The ingress producer's linger: every accept waits for its acks, so this trades accept
    # latency (+linger) for broker CPU per accept (batches); 5 is librdkafka's default (0130).
    producer_linger_ms: int = Field(default=5, ge=0)
    # Public base URL of the status links; None: the Host the client used.
    public_url: str | None = None
    # Workers: IXC calls in flight per worker; IXC calls per second for the whole worker group
    # (each worker takes its share of lane partitions); attempts per request before it is
    # dead-lettered (5xx/timeouts); backoff between attempts.
    worker_concurrency: int = Field(default=8, ge=1)
    ixc_rate_per_s: float = Field(default=20.0, gt=0)
    max_attempts: int = Field(default=4, ge=1)
    backoff_initial_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=10.0, ge=0)
    worker_group_id: str = "filas-ixc-requests"
    # A dead worker's partitions move to the others after this (Kafka session timeout).
    worker_session_timeout_s: float = Field(default=10.0, ge=6.0)
    view_ready_timeout_s: float = 60.0
    # Payment confirmed at IXC -> one message to the subscriber on the campaigns' transactional
    # lane (docs/decisions/0083): first reachable channel in this order (empty: no message),
    # these sandboxed Jinja templates (campaign variables + amount, method, invoice_id,
    # payment_id; docs/requests.md).
    payment_notice_channels: tuple[str, ...] = ("email", "sms")
    payment_notice_subject: str = "Pagamento recebido"
    payment_notice_body: str = (
        "Olá {{ first_name }}, recebemos o seu pagamento de {{ amount | brl }} ({{ method }}) "
        "do contrato {{ contract_id }}. Obrigado!"
    )


class CampaignsSettings(BaseModel):
    """Campaign fan-out (``filas campaigns fanout``): expands campaign.definitions into messages."""

    model_config = _FROZEN

    # Consumer group on campaign.definitions (prefixed by topics.prefix): partitions decide which
    # instance owns a campaign; offsets are not used (the log is re-read on assignment).
    group_id: str = "filas-campaign-fanout"
    # Messages produced and acknowledged between two progress events / command checks.
    batch_size: int = Field(default=2000, ge=1)
    # Startup: read the state topics, campaign.progress and campaign.definitions within this.
    ready_timeout_s: float = 120.0
    # Frequency caps count messages already queued by this window of campaign.messages history.
    frequency_lookback_s: float = Field(default=2 * 86_400.0, ge=0)
    # Messages a subscriber inside an active outage is spared: bulk lane, these purposes.
    outage_hold_purposes: tuple[str, ...] = ("marketing", "billing")
    # Per-subscriber outage notices (net.responses SUBSCRIBER_NOTICE): first reachable channel
    # in this order, these sandboxed Jinja templates (variables: docs/campaigns.md), this send
    # window (minutes, whole day by default); a new group starts at the latest responses.
    outage_notice_window: tuple[int, int] = (0, 1440)
    outage_notice_channels: tuple[str, ...] = ("sms", "email")
    outage_notice_subject: str = "Falha na rede na sua região"
    outage_notice_body: str = (
        "Olá {{ first_name }}, identificamos uma falha na nossa rede ({{ device }}) que pode "
        "afetar a sua conexão. Nossa equipe já está trabalhando; não é preciso abrir chamado."
    )
    outage_notices_start_from: Literal["latest", "earliest"] = "latest"


class SmtpChannelSettings(BaseModel):
    """E-mail through an SMTP relay (aiosmtplib), ``filas delivery serve --channel email``."""

    model_config = _FROZEN

    provider: str = "smtp-relay"
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    # Implicit TLS (port 465) / STARTTLS when offered (None) or required (True).
    use_tls: bool = False
    start_tls: bool | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    sender: str = "Filas <no-reply@example.net>"
    # Message-ID is <message_id@domain>: a resend after a crash carries the same Message-ID.
    message_id_domain: str = "filas.invalid"
    # Messages per second for ALL instances together (None: unlimited) and connections in use.
    rate_per_s: float | None = Field(default=None, gt=0)
    concurrency: int = Field(default=8, ge=1)


class HttpChannelSettings(BaseModel):
    """A messaging HTTP API (SMS gateway, WhatsApp Business) as configuration: request format,
    credentials and how answers are classified. Templates are sandboxed Jinja2 with the message's
    ``to``, ``body``, ``subject``, ``message_id``, ``recipient_id``, ``campaign_id`` and the
    credentials ``username``, ``password``, ``token`` (``{{ body|tojson }}`` for JSON bodies)."""

    model_config = _FROZEN

    provider: str = "sms-gateway"
    method: Literal["POST", "PUT", "GET"] = "POST"
    url: str = "http://127.0.0.1:18090/messages"
    headers: dict[str, str] = {"Content-Type": "application/json"}
    body_template: str = (
        '{"to": {{ to|tojson }}, "text": {{ body|tojson }}, "reference": {{ message_id|tojson }}}'
    )
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    # HTTP Basic auth with username/password when both are set.
    basic_auth: bool = False
    timeout_s: float = Field(default=10.0, gt=0)
    success_statuses: tuple[int, ...] = (200, 201, 202)
    # Retried with backoff (Retry-After honoured); any other status is a permanent failure.
    temporary_statuses: tuple[int, ...] = (408, 425, 429, 500, 502, 503, 504)
    # Regexes on the response body that override the status (gateways that answer 200 + error).
    permanent_body_pattern: str | None = None
    temporary_body_pattern: str | None = None
    # Dotted path of the provider's message id in a JSON answer, e.g. "id" or "messages.0.id".
    provider_id_path: str | None = "id"
    rate_per_s: float | None = Field(default=None, gt=0)
    concurrency: int = Field(default=8, ge=1)


class DeliverySettings(BaseModel):
    """Delivery workers (``filas delivery serve``): channels, shared rate limits, retries, the
    idempotency ledger (docs/campaigns.md, Delivery)."""

    model_config = _FROZEN

    email: SmtpChannelSettings = SmtpChannelSettings()
    sms: HttpChannelSettings = HttpChannelSettings()
    whatsapp: HttpChannelSettings = HttpChannelSettings(provider="whatsapp-business")
    # Consumer groups <prefix><group_id>-<channel>.<lane>.
    group_id: str = "filas-delivery"
    # Attempts per message (the first included) and the time a message may spend retrying.
    max_attempts: int = Field(default=8, ge=1)
    retry_budget_s: float = Field(default=600.0, gt=0)
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    # A 'sending' ledger entry without an outcome (the worker died mid-send): resend with the
    # same Message-ID / reference (at-least-once) or give it up (at-most-once).
    on_ambiguous: Literal["resend", "skip"] = "resend"
    # Per instance: messages handed to the provider whose outcome Kafka has not acknowledged
    # yet; bounds what a kill -9 can leave ambiguous (and the throughput: ~max_unacked / ack
    # latency).
    max_unacked: int = Field(default=64, ge=1)
    # Lower-lane batches hold about this much work at the instance's rate, so a higher-lane
    # message waits at most that long; max records per batch.
    lower_lane_batch_s: float = Field(default=0.2, gt=0)
    # Token bucket depth in seconds of the rate: sends late by up to this much (a busy event
    # loop) are caught up instead of lost; over any longer window the rate holds exactly.
    rate_burst_s: float = Field(default=0.05, ge=0)
    max_batch: int = Field(default=500, ge=1)
    # Messages whose not_before is further than this ahead hold their partition until then.
    hold_ahead_s: float = Field(default=1.0, ge=0)
    ledger_ready_timeout_s: float = Field(default=60.0, gt=0)
    session_timeout_ms: int = Field(default=45_000, ge=6_000)
    # Name written into ledger entries; None means host:pid.
    instance: str | None = None


class PingClassSettings(BaseModel):
    """How one ping class (NetworkDevice.ping_class) is probed: a round every ``interval_s``,
    ``count`` echo requests ``probe_interval_s`` apart, each waited for ``timeout_s``."""

    model_config = _FROZEN

    interval_s: float = Field(default=30.0, gt=0)
    count: int = Field(default=3, ge=1, le=100)
    probe_interval_s: float = Field(default=0.2, ge=0)
    timeout_s: float = Field(default=1.0, gt=0)


class PingSettings(BaseModel):
    """ICMP monitoring: the pinger (``filas ping serve``) and the alerting processor
    (``filas alerts serve``), docs/network.md."""

    model_config = _FROZEN

    critical: PingClassSettings = PingClassSettings(interval_s=10.0, count=3)
    standard: PingClassSettings = PingClassSettings(interval_s=30.0, count=3)
    subscriber: PingClassSettings = PingClassSettings(interval_s=60.0, count=2)
    # Devices probed at once by one pinger (each holds up to `count` probes in flight).
    concurrency: int = Field(default=1000, ge=1)
    # Consumer group over ixc.devices: pingers in one group split the inventory by partition.
    pinger_group_id: str = "filas-pinger"
    # A killed pinger's partitions move to the others after this (broker minimum: 6 s).
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    # Name written into every PingResult; None means host:pid.
    pinger_instance: str | None = None
    # Alerting: down after N consecutive rounds with every probe lost, up after M good ones.
    down_after_rounds: int = Field(default=3, ge=1)
    up_after_rounds: int = Field(default=2, ge=1)
    # Degraded: mean loss or mean RTT over the last `degraded_window` rounds above these.
    degraded_window: int = Field(default=10, ge=1)
    degraded_loss_ratio: float = Field(default=0.2, gt=0, le=1)
    degraded_rtt_ms: float = Field(default=250.0, gt=0)
    # Flapping: `flap_transitions` confirmed up/down changes within `flap_window` rounds; the
    # device leaves flapping after `flap_window` rounds without a change.
    flap_window: int = Field(default=20, ge=2)
    flap_transitions: int = Field(default=4, ge=2)
    # A device whose parent is failing (not yet down) waits this long before alerting alone.
    suppression_hold_s: float = Field(default=60.0, ge=0)
    # Root up but children still down this long: the root's alert resolves, children alert alone.
    clear_hold_s: float = Field(default=120.0, ge=0)
    # Severity: subscriber counts at which a down alert becomes major / critical.
    major_subscribers: int = Field(default=10, ge=1)
    critical_subscribers: int = Field(default=100, ge=1)
    alerts_group_id: str = "filas-alerts"
    # 'filas alerts noc-webhook': NOC_NOTIFY responses POSTed as JSON to this URL (may hold a
    # token, hence secret); None disables it.
    noc_webhook_url: SecretStr | None = None
    noc_webhook_timeout_s: float = Field(default=5.0, gt=0)
    noc_webhook_retries: int = Field(default=3, ge=0)
    noc_webhook_group_id: str = "filas-noc-webhook"
    # How far back net.alerts / net.responses are read at start-up to recover open alerts.
    recovery_lookback_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    # Automatic responses (net.responses) per root device type (NetworkDevice.device_type).
    responses: dict[str, list[str]] = {
        "POP": ["NOC_NOTIFY", "TICKET", "PAUSE_MARKETING", "SUBSCRIBER_NOTICE"],
        "OLT": ["NOC_NOTIFY", "TICKET", "PAUSE_MARKETING", "SUBSCRIBER_NOTICE"],
        "SWITCH": ["NOC_NOTIFY", "TICKET", "PAUSE_MARKETING", "SUBSCRIBER_NOTICE"],
        "ROUTER": ["NOC_NOTIFY", "TICKET", "PAUSE_MARKETING", "SUBSCRIBER_NOTICE"],
        "RADIO": ["NOC_NOTIFY", "TICKET", "PAUSE_MARKETING", "SUBSCRIBER_NOTICE"],
        "OTHER": ["NOC_NOTIFY", "PAUSE_MARKETING", "SUBSCRIBER_NOTICE"],
        "CPE": ["PAUSE_MARKETING"],
        "ONU": ["PAUSE_MARKETING"],
    }

    def for_class(self, ping_class: str) -> PingClassSettings | None:
        """The probe settings of a NetworkDevice.ping_class; None for NONE (not probed)."""
        return {
            "CRITICAL": self.critical,
            "STANDARD": self.standard,
            "SUBSCRIBER": self.subscriber,
        }.get(ping_class)


class MetricsSettings(BaseModel):
    """Prometheus ``/metrics`` endpoint every long-running Filas process serves."""

    host: str = "127.0.0.1"
    # None: no endpoint (CLI one-shots, tests). Kubernetes sets 9400 on every pod.
    port: int | None = Field(default=None, ge=0, le=65535)


class MonitoringSettings(BaseModel):
    """``filas monitor serve``: lag passes, history events, dependency scrapes, status page."""

    model_config = _FROZEN

    interval_s: float = Field(default=10.0, gt=0)
    # Publish LagSample / BottleneckFinding events every pass (history for ClickHouse).
    publish: bool = True
    # /metrics endpoints of Filas processes whose dependency time the dependency rule judges.
    scrape_urls: tuple[str, ...] = ()
    # Status page (and /metrics) of the monitor; None: no web server.
    web_host: str = "127.0.0.1"
    web_port: int | None = Field(default=None, ge=0, le=65535)
    # Chart window of the status page, read from the ClickHouse lag table.
    history_minutes: int = Field(default=60, ge=1)


class TopicsSettings(BaseModel):
    model_config = _FROZEN

    # Prefix for every topic name: lets two environments share a cluster and tests isolate runs.
    prefix: str = ""


class LocalPlatformSettings(BaseModel):
    """Where and how ``filas up`` runs the local services. Ports are all configurable."""

    model_config = _FROZEN

    home: Path = Path(".filas")
    # Downloaded Kafka jars and the Apicurio app; None means <home>/cache. Tests point this at the
    # repository's .filas/cache so every session reuses one download.
    cache_dir: Path | None = None
    kafka_version: str = "4.1.0"
    log4j_version: str = "2.24.3"
    slf4j_version: str = "2.0.17"
    apicurio_version: str = "3.3.3"
    kafka_port: int = 19092
    controller_port: int = 19093
    # With --brokers N, node i uses kafka_port + 2*i and controller_port + 2*i.
    registry_port: int = 18081
    # Apicurio's Quarkus management (health/metrics) port; its default, 9000, is shared by every
    # instance and would collide between two registries on one machine.
    registry_management_port: int = 18082
    clickhouse_tcp_port: int = 19000
    clickhouse_http_port: int = 18123
    kafka_heap: str = "512m"
    registry_heap: str = "384m"
    start_timeout_s: float = 120.0
    scram_username: str = "filas"
    scram_password: SecretStr = SecretStr("filas-local-secret")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FILAS_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
    )

    environment: Literal["local", "homologation", "production"] = "local"
    service_name: str = "filas"
    kafka: KafkaSettings = KafkaSettings()
    registry: RegistrySettings = RegistrySettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    ixc: IxcSettings = IxcSettings()
    radius: RadiusSettings = RadiusSettings()
    ingress: IngressSettings = IngressSettings()
    topics: TopicsSettings = TopicsSettings()
    campaigns: CampaignsSettings = CampaignsSettings()
    ping: PingSettings = PingSettings()
    delivery: DeliverySettings = DeliverySettings()
    metrics: MetricsSettings = MetricsSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    local: LocalPlatformSettings = LocalPlatformSettings()
