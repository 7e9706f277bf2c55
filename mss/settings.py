"""Settings for MSS Kalenderkoppling.

Everything comes from the environment (see the README's table). With nothing set the product
runs locally on SQLite, a file-based Celery broker and the sandboxes; `MSS_ENV=production`
refuses to start until the secrets and hosts are given and is then safe for `check --deploy`.
"""

import base64
import hashlib
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("MSS_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()

MSS_ENV = env.str("MSS_ENV", default="development")
if MSS_ENV not in ("development", "production"):
    raise ImproperlyConfigured(f"MSS_ENV must be 'development' or 'production', not {MSS_ENV!r}.")
PRODUCTION = MSS_ENV == "production"

if PRODUCTION:
    missing = [
        name
        for name in (
            "SECRET_KEY",
            "ALLOWED_HOSTS",
            "MSS_ENCRYPTION_KEYS",
            "TELENOR_ID_URL",
            "TELENOR_ID_CLIENT_ID",
            "TELENOR_ID_CLIENT_SECRET",
        )
        if not env.str(name, default="")
    ]
    if missing:
        raise ImproperlyConfigured(
            "MSS_ENV=production needs these environment variables: "
            + ", ".join(missing)
            + ". See the README's table of environment variables."
        )

SECRET_KEY = env.str("SECRET_KEY", default="dev-only-secret-key-not-for-production-use-0123456789")
DEBUG = env.bool("DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Secrets at rest: comma-separated Fernet keys, newest first (MultiFernet rotates).
# Development derives one from SECRET_KEY so a fresh checkout works without set-up.
_dev_key = base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()
MSS_ENCRYPTION_KEYS = env.list("MSS_ENCRYPTION_KEYS", default=[_dev_key])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "csp",
    "axes",
    "mozilla_django_oidc",
    "template_partials",
    "django_celery_beat",
    "django_prometheus",
    "onex",
    "calendarsync",
    "mss",
]

MIDDLEWARE = [
    # Request metrics (django-prometheus): its "before" middleware first, "after" last.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # /healthz and /readyz, before the host check and the https redirect (mss/health.py)
    "mss.health.probes",
    "django.middleware.security.SecurityMiddleware",
    # The request's id on its log lines and in its answer (X-Request-ID; mss/request_id.py)
    "mss.request_id.request_id",
    # Static files from the app server when the proxy does not serve them (collectstatic first)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "mss.middleware.security_headers",
    "mss.middleware.idle_timeout",
    "django_htmx.middleware.HtmxMiddleware",
    # Last but django-prometheus's "after" middleware, which only watches the view's answer,
    # so the lock-out answer still passes through every other middleware, as django-axes asks.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# Company admins sign in with Telenor ID (onex.telenorid); the password form is for Telenor
# staff and, outside production, the printed demo admin (LOCAL_LOGIN_USERNAMES).
# Sign-in throttling (django-axes), for the login page and /admin/login/ alike: after five
# failures for one account from one address, that pair waits AXES_COOLOFF_MINUTES.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "onex.telenorid.TelenorIdBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 5
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

# Content-Security-Policy (django-csp): scripts and styles from our own static files only; no
# inline script anywhere. Inline style *attributes* stay allowed for the dashboard's timeline
# bars (their widths), which cannot run code.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
    }
}
# Features no page of ours uses are switched off for them and anything they might embed.
PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), "
    "magnetometer=(), gyroscope=(), accelerometer=()"
)
# Sessions end when the browser closes, and after this long without a request (a signed-in
# session is saved again at most every SESSION_REFRESH_SECONDS: mss.middleware.idle_timeout).
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_AGE = env.int("SESSION_IDLE_SECONDS", default=8 * 3600)
SESSION_REFRESH_SECONDS = 300

ROOT_URLCONF = "mss.urls"
WSGI_APPLICATION = "mss.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'mss.sqlite3'}"),
}
# Persistent connections wherever the database is a server (a new PostgreSQL connection costs
# more than a webhook's queries). SQLite keeps 0: runserver handles each request in a thread of
# its own, so a persistent connection per thread would only pile up open files.
_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=0 if _SQLITE else 60)
# A persistent connection the database closed meanwhile is replaced before it is used.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DB_CONN_HEALTH_CHECKS", default=True)
if _SQLITE:
    # Web, worker and beat share the file: wait for locks instead of failing at once, and take
    # the write lock when a transaction begins (a read-then-write transaction cannot be upgraded
    # while another process writes, and SQLite would answer "database is locked" at once).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "calendarsync:overview"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "sv"
LANGUAGES = [("sv", _("Swedish")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "mss" / "locale"]
# Named date formats per language ("ons 2 dec 09:00" in Swedish): see mss/formats/.
FORMAT_MODULE_PATH = ["mss.formats"]
TIME_ZONE = "Europe/Stockholm"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=str(VAR_DIR / "static"))
if not PRODUCTION:
    Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)  # whitenoise warns of a missing one
else:
    # Hashed names, compressed copies, cached for a year by browsers and the proxy (whitenoise).
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }

# Celery: JSON only, bounded tasks. The embedded default is kombu's file-system broker under
# var/, so a laptop needs no Redis; CELERY_BROKER_URL=redis://… switches to Redis.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery-queue"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "control_folder": str(VAR_DIR / "celery-control"),
        "store_processed": False,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
# At-least-once delivery, as Celery's documentation advises (task_acks_late,
# task_reject_on_worker_lost, "Redis caveats"); every task is idempotent and a mailbox's runs
# are serialised by its claim (calendarsync/claims.py), so a task that runs twice does no harm.
# A message is acknowledged when its task has finished, and put back when the process running
# it died, so a killed worker loses nothing.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # long tasks: a worker holds one message per process
# A task still running when the broker connection drops finishes its work (and releases its
# mailboxes) instead of being killed mid-push; Redis redelivers it if it still has it.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# The worker reconnects, at start and after a loss, for as long as the broker is away (None:
# forever), also after an invalid answer, instead of exiting.
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_CHANNEL_ERROR_RETRY = True
# Redis hands out again a message unacknowledged for visibility_timeout seconds (kombu's default
# is an hour, which is how long a killed worker's messages waited). A countdown message is held
# unacknowledged from delivery until its task ends, so the timeout is the longest countdown any
# task uses (tasks.py: the reconcile's spread) plus the hard time limit, with a minute to spare.
MSS_TASK_MAX_COUNTDOWN = 310
MSS_BROKER_VISIBILITY_TIMEOUT = CELERY_TASK_TIME_LIMIT + MSS_TASK_MAX_COUNTDOWN + 60
if not CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": MSS_BROKER_VISIBILITY_TIMEOUT}
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# A queue of its own lets a benchmark's or test's workers share a broker with others.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
# Single-mailbox runs go to the interactive queue (`interactive`, mss/celery.py).
CELERY_TASK_ROUTES = ("mss.celery.route_task",)

# A run holds its mailboxes by a lease its process renews every third of it
# (calendarsync/claims.py): a run that died with its worker frees them this long after.
MSS_CLAIM_LEASE_SECONDS = env.int("MSS_CLAIM_LEASE_SECONDS", default=30)

# Back-to-back absences share one return time; gaps up to this many minutes still chain.
MSS_RETURN_GAP_MINUTES = env.int("MSS_RETURN_GAP_MINUTES", default=0)
# A requested sync still waiting after this many minutes is shown as an error (workers down?).
MSS_SYNC_QUEUE_ALERT_MINUTES = env.int("MSS_SYNC_QUEUE_ALERT_MINUTES", default=10)
# Katalog Synk (calendarsync/membership.py): a membership run that would remove more users than
# this many, or than this share of the integration's users, holds them for an admin's confirmation.
MSS_GROUP_REMOVAL_HOLD_COUNT = env.int("MSS_GROUP_REMOVAL_HOLD_COUNT", default=50)
MSS_GROUP_REMOVAL_HOLD_SHARE = env.float("MSS_GROUP_REMOVAL_HOLD_SHARE", default=0.10)
# A Graph mailbox without a change notification (or renewal) for this long gets its
# subscription checked (renewed early; Graph may have dropped it without a word). Two days:
# an idle mailbox's renewals then cost half a request a day (calendarsync/subscriptions.py).
MSS_QUIET_MAILBOX_HOURS = env.int("MSS_QUIET_MAILBOX_HOURS", default=48)

# Where the outside world lives. The defaults are the sandboxes on loopback.
ONEX_API_URL = env.str("ONEX_API_URL", default="http://127.0.0.1:8010")
ONEX_CLIENT_ID = env.str("ONEX_CLIENT_ID", default="mss-demo")
ONEX_CLIENT_SECRET = env.str("ONEX_CLIENT_SECRET", default="mss-demo-secret")
# One X's rate budget per client id, shared by all workers through the Redis cache
# (onex/budget.py): requests per window (0 = none), the window, and the most of it that bulk
# work leaves to interactive work (a person's change; a quarter of it while none is seen).
ONEX_RATE_LIMIT_PER_MINUTE = env.int("ONEX_RATE_LIMIT_PER_MINUTE", default=600)
ONEX_RATE_WINDOW_SECONDS = env.float("ONEX_RATE_WINDOW_SECONDS", default=60.0)
ONEX_RATE_INTERACTIVE_SHARE = env.float("ONEX_RATE_INTERACTIVE_SHARE", default=0.2)
MS_LOGIN_URL = env.str("MS_LOGIN_URL", default="https://127.0.0.1:8011")
MS_GRAPH_URL = env.str("MS_GRAPH_URL", default="https://127.0.0.1:8011/v1.0")
MS_CLIENT_ID = env.str("MS_CLIENT_ID", default="00000000-0000-0000-0000-0000000000aa")
# The app registration's display name: what Microsoft's consent page and Enterprise
# Applications show, so the help texts that send admins there name it the same way.
MS_APP_DISPLAY_NAME = env.str("MS_APP_DISPLAY_NAME", default="MSS Kalenderkoppling")
MS_CLIENT_SECRET = env.str("MS_CLIENT_SECRET", default="sandbox-client-secret")
# Extra CA bundle to trust for Microsoft endpoints (the M365 sandbox's test CA); empty = system.
MS_CA_BUNDLE = env.str("MS_CA_BUNDLE", default=str(VAR_DIR / "sandbox" / "m365-ca.pem"))
MS_ADDIN_ID = env.str("MS_ADDIN_ID", default="5f3c6d2a-8b1e-4c7a-9d0f-3e2b1a4c5d6e")
# Public https base URL of this service, for Graph webhooks and consent redirects.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
# Outlook loads the add-in (its manifest names these URLs) and Microsoft posts webhooks only
# over https.
if PRODUCTION and urlsplit(PUBLIC_BASE_URL).scheme != "https":
    raise ImproperlyConfigured(
        f"MSS_ENV=production needs an https PUBLIC_BASE_URL, not {PUBLIC_BASE_URL!r}."
    )
# The API scope the add-in's Entra token is for (the app registration's "Expose an API":
# Application ID URI api://<this service's host>/<client id>, scope access_as_user).
MS_ADDIN_API_SCOPE = env.str(
    "MS_ADDIN_API_SCOPE",
    default=f"api://{urlsplit(PUBLIC_BASE_URL).netloc}/{MS_CLIENT_ID}/access_as_user",
)

# The Outlook add-in's task pane. Outlook requires Office.js from Microsoft's CDN; `make run`
# points it at the M365 sandbox's stand-in, since no Outlook runs here. The pane asks Entra for
# a token through Outlook (nested app authentication), with this authority.
OFFICE_JS_URL = env.str(
    "OFFICE_JS_URL", default="https://appsforoffice.microsoft.com/lib/1/hosted/office.js"
)
MS_ADDIN_AUTHORITY = env.str("MS_ADDIN_AUTHORITY", default=MS_LOGIN_URL.rstrip("/") + "/common")
# Where else the pane's page may connect: outside production, the sandboxes the Office.js
# stand-in writes the user's choice to (as Outlook would to the mailbox).
ADDIN_CONNECT_SRC = env.list(
    "ADDIN_CONNECT_SRC",
    default=[] if PRODUCTION else [MS_LOGIN_URL.rstrip("/"), "https://127.0.0.1:8012"],
)

# Exchange On Prem: where customers' Exchange servers send push notifications, and the
# addresses we connect to their EWS from (both go into the firewall table the admin is shown).
EWS_NOTIFICATION_URL = env.str(
    "EWS_NOTIFICATION_URL",
    default=PUBLIC_BASE_URL.rstrip("/") + "/MSS/services/EWSNotificationService",
)
MSS_OUTGOING_ADDRESSES = env.list("MSS_OUTGOING_ADDRESSES", default=["82.182.1.73", "82.182.1.75"])
# EWS connections: NTLM (or "basic"), how long to wait out ErrorServerBusy (seconds), pooled
# connections per integration, and an extra CA to trust (the EWS sandbox's test CA).
EWS_AUTH_TYPE = env.str("EWS_AUTH_TYPE", default="ntlm")
EWS_MAX_WAIT = env.int("EWS_MAX_WAIT", default=60)
EWS_MAX_CONNECTIONS = env.int("EWS_MAX_CONNECTIONS", default=4)
# Exchange sends a status event this often (minutes); twice that in silence = a lost subscription.
EWS_STATUS_FREQUENCY = env.int("EWS_STATUS_FREQUENCY", default=30)
EWS_CA_BUNDLE = env.str(
    "EWS_CA_BUNDLE", default="" if PRODUCTION else str(VAR_DIR / "sandbox" / "ews-ca.pem")
)
# host:port pairs the EWS URL check lets through although internal: the EWS sandbox on loopback.
OUTBOUND_ALLOWED_HOSTS = env.list(
    "OUTBOUND_ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1:8012"]
)

# Telenor ID (OpenID Connect through mozilla-django-oidc). TELENOR_ID_URL is the issuer; the
# endpoints default to the sandbox's paths under it and can each be set on their own.
TELENOR_ID_URL = env.str("TELENOR_ID_URL", default="https://127.0.0.1:8013").rstrip("/")
OIDC_OP_AUTHORIZATION_ENDPOINT = env.str(
    "TELENOR_ID_AUTHORIZATION_URL", default=TELENOR_ID_URL + "/authorize"
)
OIDC_OP_TOKEN_ENDPOINT = env.str("TELENOR_ID_TOKEN_URL", default=TELENOR_ID_URL + "/token")
OIDC_OP_USER_ENDPOINT = env.str("TELENOR_ID_USERINFO_URL", default=TELENOR_ID_URL + "/userinfo")
OIDC_OP_JWKS_ENDPOINT = env.str("TELENOR_ID_JWKS_URL", default=TELENOR_ID_URL + "/jwks")
OIDC_OP_LOGOUT_ENDPOINT = env.str("TELENOR_ID_LOGOUT_URL", default=TELENOR_ID_URL + "/logout")
OIDC_RP_CLIENT_ID = env.str("TELENOR_ID_CLIENT_ID", default="mss-kalenderkoppling")
OIDC_RP_CLIENT_SECRET = env.str("TELENOR_ID_CLIENT_SECRET", default="sandbox-telenorid-secret")
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_RP_SCOPES = "openid email profile"
OIDC_USE_PKCE = True
OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
OIDC_TIMEOUT = 10
OIDC_CALLBACK_CLASS = "onex.telenorid.CallbackView"
OIDC_OP_LOGOUT_URL_METHOD = "onex.telenorid.logout_url"
# Extra CA bundle to trust for Telenor ID (the sandbox's test CA); empty = the system's.
TELENOR_ID_CA_BUNDLE = env.str(
    "TELENOR_ID_CA_BUNDLE",
    default="" if PRODUCTION else str(VAR_DIR / "sandbox" / "telenorid-ca.pem"),
)
OIDC_VERIFY_SSL = TELENOR_ID_CA_BUNDLE or True
TELENOR_ID_POST_LOGOUT_URL = PUBLIC_BASE_URL.rstrip("/") + "/"
LOCAL_LOGIN_USERNAMES = env.list(
    "LOCAL_LOGIN_USERNAMES", default=[] if PRODUCTION else ["anna.andersson@demo.se"]
)

# Prometheus metrics at /metrics (mss/metrics/). In production only with this bearer token,
# and switched off (404) while it is empty. A Celery worker's main process serves its pool's
# metrics on MSS_WORKER_METRICS_PORT when set (0: not). PROMETHEUS_MULTIPROC_DIR is read by
# prometheus_client itself (see the README).
METRICS_TOKEN = env.str("MSS_METRICS_TOKEN", default="")
MSS_WORKER_METRICS_PORT = env.int("MSS_WORKER_METRICS_PORT", default=0)
MSS_WORKER_METRICS_ADDR = env.str("MSS_WORKER_METRICS_ADDR", default="0.0.0.0")

# Logs: one JSON object a line in production, readable lines in development (LOG_FORMAT=json
# or plain). Each line names its request or Celery task and its integration (by code), and
# its event (calendarsync/logcontext.py); never an email, a subject or a secret.
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if PRODUCTION else "plain")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'json' or 'plain', not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "calendarsync.logcontext.ContextFilter"}},
    "formatters": {
        "plain": {
            "()": "calendarsync.logcontext.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s%(context)s %(message)s",
        },
        "json": {
            "()": "calendarsync.logcontext.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(event)s %(message)s %(request_id)s %(task_id)s "
            "%(integration)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # exchangelib logs a failed POST's whole request at ERROR (its XML names the mailbox)
        # and field values at WARNING/INFO; our EWS client reports its errors by type.
        "exchangelib": {"level": "CRITICAL"},
    },
}
# Celery workers and beat log through LOGGING above instead of setting up their own root
# logger, so their lines have the same format and fields.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    X_FRAME_OPTIONS = "DENY"
