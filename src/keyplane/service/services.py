"""The assembled service layer of one process: one database, one cache, one usage buffer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Self

from limits.storage import Storage

from keyplane.config import Settings
from keyplane.core import scopes as scope_rules
from keyplane.ionq import feature as ionq
from keyplane.service.accounts.email_links import EmailLinks
from keyplane.service.accounts.factors import FactorService
from keyplane.service.accounts.invitations import InvitationService
from keyplane.service.accounts.members import MemberService, SignupPolicy
from keyplane.service.accounts.organizations import AccountService, Bootstrapped
from keyplane.service.accounts.passkeys import PasskeyService, RelyingParty
from keyplane.service.accounts.policy import PolicyService
from keyplane.service.accounts.projects import ProjectService
from keyplane.service.accounts.sessions import SessionService
from keyplane.service.accounts.sso import SsoService
from keyplane.service.accounts.sudo import SudoRule
from keyplane.service.audit import AuditService
from keyplane.service.availability import readiness_problem
from keyplane.service.events.delivery import DeliveryWorker
from keyplane.service.events.dispatcher import Dispatcher, Fanout
from keyplane.service.events.log import EventLog
from keyplane.service.events.notify import MailNotifier, NotificationPreferences
from keyplane.service.events.outbound import OutboundClient
from keyplane.service.events.policies import KeyPolicyService
from keyplane.service.events.scheduler import Scheduler
from keyplane.service.events.signals import KeySignals
from keyplane.service.events.webhooks import WebhookService
from keyplane.service.keys.cache import KeyCache
from keyplane.service.keys.invalidation import ChangeFeed
from keyplane.service.keys.leaks import GitHubKeyring, LeakService
from keyplane.service.keys.lifecycle import KeyService
from keyplane.service.keys.verifier import Verifier
from keyplane.service.limits.failed_keys import FailedKeyLimiter
from keyplane.service.limits.key_limits import Limiter
from keyplane.service.limits.sign_in_throttle import LoginThrottle
from keyplane.service.limits.usage import UsageBuffer
from keyplane.service.limits.usage_history import UsageHistory
from keyplane.service.mail.outbox import Outbox
from keyplane.service.mail.smtp import SmtpSender
from keyplane.service.records import Actor, Caller, CreatedKey
from keyplane.service.sealing import Sealer
from keyplane.storage import migrate
from keyplane.storage.database import Database

BOOTSTRAP_KEY_NAME = "Management key"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _version() -> str:
    try:
        return version("keyplane")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0"


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    accounts: Bootstrapped
    key: CreatedKey


class Services:
    """Everything the faces (API, CLI, middleware) call, wired once per process."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        clock: Callable[[], datetime] = utc_now,
        limit_storage: Storage | None = None,
        extra_fanout: Sequence[Fanout] = (),
    ):
        """The dispatcher calls the mail notifier, then each of ``extra_fanout``, for each
        event, in the transaction that fans it out. ``limit_storage`` (a
        ``limits`` storage) shares the sign-in and failed-key counts between processes;
        by default they share the Redis of ``KEYPLANE_REDIS_URL`` when it is set, else
        they stay in this process."""
        self.settings = settings
        self.database = database
        self.clock = clock
        self.cache = KeyCache(ttl=settings.key_cache_ttl, max_size=settings.key_cache_size)
        self.usage = UsageBuffer(database, interval=settings.usage_flush_interval)
        self.changes = ChangeFeed(
            database,
            self.cache,
            clock=clock,
            redis_url=settings.redis_url,
            poll_interval=settings.change_poll_interval,
        )
        self.limiter = Limiter(self.usage, redis_url=settings.redis_url)
        #: Sensitive changes need a recent sign-in (service/accounts/sudo.py).
        self.sudo = SudoRule(clock, settings.sudo_timeout)
        key_format = settings.key_format
        self.keys = KeyService(
            database,
            key_format=key_format,
            changes=self.changes,
            usage=self.usage,
            clock=clock,
            max_json_depth=settings.max_json_depth,
            sudo=self.sudo,
        )
        #: Callers, canary uses, rate-limit and quota events from what verification saw.
        self.signals = KeySignals(database, self.keys, clock=clock)
        self.usage.after_flush = self.signals
        self.events = EventLog(database)
        self.usage_history = UsageHistory(database, self.keys, self.usage, clock=clock)
        #: Seals the secrets the server reads back (service/sealing.py).
        self.sealer = Sealer.from_settings(settings)
        self.accounts = AccountService(database, clock=clock)
        #: Authenticator apps and recovery codes (service/accounts/factors.py).
        self.factors = FactorService(database, self.sealer, clock=clock, sudo=self.sudo)
        #: The organization's security settings ("members must use a second factor").
        self.security = PolicyService(database, clock=clock, sudo=self.sudo)
        self.audit = AuditService(database)
        #: Key policies: lifetime and stale keys (service/events/policies.py).
        self.key_policies = KeyPolicyService(database, clock=clock, sudo=self.sudo)
        #: Scans for expiring, expired and stale keys (service/events/scheduler.py).
        self.scheduler = Scheduler(
            database, self.keys, clock=clock, interval=settings.scheduler_interval
        )
        self.projects = ProjectService(database, clock=clock)
        if limit_storage is None:  # with KEYPLANE_REDIS_URL, every instance counts together
            limit_storage = self.limiter.shared_storage
        throttle = LoginThrottle(
            limit_storage,
            account_limit=settings.login_account_limit,
            ip_limit=settings.login_ip_limit,
        )
        self.sessions = SessionService(
            database,
            self.accounts,
            throttle,
            clock=clock,
            idle_timeout=settings.session_idle_timeout,
            lifetime=settings.session_lifetime,
            factors=self.factors,
        )
        #: Passkeys and security keys (WebAuthn); the RP id comes from the console URL.
        self.passkeys = PasskeyService(
            database,
            self.sealer,
            self.factors,
            self.sessions,
            relying_party=RelyingParty.from_url(settings.console_url),
            clock=clock,
            sudo=self.sudo,
        )
        #: Failed key attempts per client IP (the API's ``authenticate``; the hot path).
        self.failed_keys = FailedKeyLimiter(settings.failed_key_limit, limit_storage)
        self.outbox = Outbox(
            database,
            self.sealer,
            sender=(
                SmtpSender(settings.smtp_url, settings.smtp_from)
                if settings.smtp_url is not None
                else None
            ),
            clock=clock,
        )
        #: Mail about events (the dispatcher calls it once per event) and who muted what.
        self.notifier = MailNotifier(self.outbox, console_url=settings.console_url)
        self.notifications = NotificationPreferences(database)
        #: Verification and password-reset links (mailed through the outbox).
        self.email_links = EmailLinks(
            database,
            self.accounts,
            self.outbox,
            throttle,
            console_url=settings.console_url,
            clock=clock,
        )
        self.members = MemberService(
            database,
            self.accounts,
            self.sessions,
            policy=SignupPolicy(settings.signup),
            clock=clock,
            email_links=self.email_links,
            sudo=self.sudo,
        )
        self.invitations = InvitationService(
            database,
            self.accounts,
            self.sessions,
            clock=clock,
            outbox=self.outbox,
            console_url=settings.console_url,
        )
        #: Single sign-on (OIDC) per organization; its redirect URI is built from
        #: ``Settings.console_url``, never from a request.
        self.sso = SsoService(
            database,
            self.sessions,
            self.sealer,
            console_url=settings.console_url,
            clock=clock,
            sudo=self.sudo,
        )
        keyring = (
            GitHubKeyring.from_file(settings.github_keys_file)
            if settings.github_keys_file is not None
            else GitHubKeyring()
        )
        self.leaks = LeakService(
            database, self.keys, key_format=key_format, keyring=keyring, clock=clock
        )
        self.verifier = Verifier(
            database,
            key_format=key_format,
            cache=self.cache,
            usage=self.usage,
            clock=clock,
            limiter=self.limiter,
        )
        #: Webhooks (service/events/): endpoints, the dispatcher that fans events out
        #: once, and the workers that send the deliveries.
        outbound = OutboundClient(
            settings.outbound_allow_networks, user_agent=f"Keyplane-Webhooks/{_version()}"
        )
        self.webhooks = WebhookService(database, self.sealer, outbound, clock=clock, sudo=self.sudo)
        self.dispatcher = Dispatcher(
            database, clock=clock, extra_fanout=(self.notifier, *extra_fanout)
        )
        self.deliveries = DeliveryWorker(
            database,
            self.sealer,
            outbound,
            clock=clock,
            workers=settings.webhook_workers,
            disable_after_failures=settings.webhook_disable_after_failures,
            disable_after=settings.webhook_disable_after,
            user_agent=f"Keyplane-Webhooks/{_version()}",
        )
        #: The IonQ feature's jobs and the worker pool that runs them (``keyplane.ionq``).
        self.jobs, self.job_runner = ionq.open_jobs(settings, database, clock=clock)

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utc_now,
        limit_storage: Storage | None = None,
        extra_fanout: Sequence[Fanout] = (),
    ) -> Self:
        """Connect, bring the schema up to date (SQLite) or check it is (PostgreSQL)."""
        database = Database(settings.database_url)
        try:
            migrate.prepare(database.engine)
            return cls(
                settings,
                database,
                clock=clock,
                limit_storage=limit_storage,
                extra_fanout=extra_fanout,
            )
        except BaseException:
            database.dispose()
            raise

    def readiness_problem(self) -> str | None:
        """None when the database answers at this Keyplane's schema; else why not
        (``/readyz``; blocking, for a worker thread)."""
        return readiness_problem(self.database)

    def start(self) -> None:
        """Start background work: the usage flusher, the cache's change feed, the job workers,
        the outbox and the key scheduler."""
        self.usage.start()
        self.changes.start()
        self.job_runner.start()
        self.outbox.start()
        self.scheduler.start()
        self.dispatcher.start()
        self.deliveries.start()

    def close(self) -> None:
        """Stop the job workers and the change feed, write pending usage, release connections."""
        self.deliveries.stop()
        self.dispatcher.stop()
        self.scheduler.stop()
        self.outbox.stop()
        self.job_runner.stop()
        self.changes.stop()
        self.usage.stop()
        self.limiter.close()
        self.sso.close()
        self.database.dispose()

    def bootstrap(
        self,
        *,
        organization_name: str,
        project_name: str,
        owner_email: str,
        owner_password: str | None = None,
    ) -> BootstrapResult:
        """A new organization, its owner and first project, and a management key with ``*``."""
        actor = Actor.operator()
        with self.database.write() as session:
            accounts = self.accounts.bootstrap(
                session,
                organization_name=organization_name,
                project_name=project_name,
                owner_email=owner_email,
                owner_password=owner_password,
                actor=actor,
            )
            caller = Caller(accounts.organization.id, (scope_rules.ALL,), actor)
            key = self.keys.create_in(
                session,
                caller,
                accounts.project.id,
                name=BOOTSTRAP_KEY_NAME,
                scopes=[scope_rules.ALL],
            )
        return BootstrapResult(accounts, key)
