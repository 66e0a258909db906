"""Aftercare settings, read from the environment.

With no variables set the app runs on the embedded default: SQLite, kombu's
filesystem broker and emails written to files under ``var/``.  With ``DEBUG``
off, every value that production needs must be given and valid, or the process
refuses to start with a message that names the variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("AFTERCARE_VAR_DIR", BASE_DIR / "var"))

env = environ.Env()


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def _int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def _required_in_production(name: str, default: str) -> str:
    raw = os.environ.get(name, "")
    if raw:
        return raw
    if DEBUG:
        return default
    raise ImproperlyConfigured(f"{name} must be set when DEBUG is off")


def _url(name: str, default: str) -> str:
    value = _required_in_production(name, default)
    if "://" not in value:
        raise ImproperlyConfigured(f"{name} must be a URL such as scheme://host, not {value!r}")
    return value


DEBUG = _bool("DEBUG", True)
TESTING = _bool("AFTERCARE_TESTING", False)

SECRET_KEY = _required_in_production("SECRET_KEY", "dev-only-insecure-key-never-use-in-production")
if not DEBUG and (len(SECRET_KEY) < 50 or SECRET_KEY.startswith("dev-only")):
    raise ImproperlyConfigured("SECRET_KEY must be a random string of at least 50 characters")
# Rotating SECRET_KEY: keep the old key here (comma-separated) until the patient links it signed have expired.
SECRET_KEY_FALLBACKS = [key.strip() for key in os.environ.get("SECRET_KEY_FALLBACKS", "").split(",") if key.strip()]

ALLOWED_HOSTS = [h.strip() for h in _required_in_production("ALLOWED_HOSTS", "*").split(",") if h.strip()]
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must name at least one host")

SITE_URL = _url("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = [SITE_URL]

TIME_ZONE = os.environ.get("TIME_ZONE") or "UTC"
if TIME_ZONE not in available_timezones():
    raise ImproperlyConfigured(f"TIME_ZONE must be an IANA time zone such as Europe/Berlin, not {TIME_ZONE!r}")
ZoneInfo(TIME_ZONE)
USE_TZ = True
USE_I18N = True
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("fr", "Français"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]

INSTALLED_APPS = [
    "clinic.apps.AftercareAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "simple_history",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "csp",
    "clinic.apps.ClinicConfig",
    "protocols.apps.ProtocolsConfig",
    "patients.apps.PatientsConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "clinic.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "clinic.two_factor.TwoFactorMiddleware",
    "clinic.middleware.ClinicTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "axes.middleware.AxesMiddleware",
]

# A record's past versions are for reading; the admin refuses to save one back
# (clinic/admin_base.py), so simple_history's "Revert" button is not shown.
SIMPLE_HISTORY_REVERT_DISABLED = True

ROOT_URLCONF = "clinic.urls"
WSGI_APPLICATION = "clinic.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": env.db_url_config(_url("DATABASE_URL", f"sqlite:///{VAR_DIR / 'aftercare.sqlite3'}"))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the worker writes; the timeout makes
    # writers wait for each other instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", "transaction_mode": "IMMEDIATE"}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = _int("CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if os.environ.get("AFTERCARE_TEST_DB_NAME"):
    DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ["AFTERCARE_TEST_DB_NAME"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache (rate limits, lockouts) -------------------------------------------
# Per-process memory by default; give every process the same Redis in
# production so that rate limits count across all web processes.
CACHE_URL = os.environ.get("CACHE_URL", "locmem://")
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
elif CACHE_URL == "locmem://":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    raise ImproperlyConfigured(f"CACHE_URL must be redis://… or locmem://, not {CACHE_URL!r}")

# --- auth -----------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"
SESSION_COOKIE_AGE = _int("SESSION_IDLE_MINUTES", 30, minimum=1) * 60
SESSION_SAVE_EVERY_REQUEST = True  # the age above is an idle timeout, not a fixed lifetime
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# A staff invitation's "choose your password" link (clinic/invitations.py) expires after this, and works once.
PASSWORD_RESET_TIMEOUT = _int("STAFF_INVITATION_LINK_DAYS", 3, minimum=1) * 24 * 3600
AXES_FAILURE_LIMIT = _int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = 0.25  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The client's address as the rate limits see it (AFTERCARE_TRUSTED_PROXIES below),
# not the proxy's: otherwise five wrong passwords from anywhere lock the account for everyone.
AXES_CLIENT_IP_CALLABLE = "clinic.client_address.client_address"
AXES_RESET_ON_SUCCESS = True
AXES_ENABLED = _bool("AXES_ENABLED", True)
AXES_VERBOSE = False
OTP_TOTP_ISSUER = "Aftercare"

# --- security headers -----------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = _int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
    }
}

# --- static and media -----------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
# Media is never served at a public URL: photos and certificates go through
# views that check the clinic and log the access.
MEDIA_URL = "/protected-media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG or TESTING
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- email ----------------------------------------------------------------
EMAIL_URL = _url("EMAIL_URL", f"filemail://{VAR_DIR / 'mail'}")
if EMAIL_URL.startswith("filemail://"):
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = EMAIL_URL.removeprefix("filemail://")
    Path(EMAIL_FILE_PATH).mkdir(parents=True, exist_ok=True)
else:
    vars().update(env.email_url_config(EMAIL_URL))
EMAIL_TIMEOUT = _int("EMAIL_TIMEOUT", 20, minimum=1)
DEFAULT_FROM_EMAIL = _required_in_production("DEFAULT_FROM_EMAIL", "Aftercare <aftercare@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
if "@" not in DEFAULT_FROM_EMAIL:
    raise ImproperlyConfigured(f"DEFAULT_FROM_EMAIL must be an email address, not {DEFAULT_FROM_EMAIL!r}")

# --- celery ---------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = _required_in_production("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    for sub in ("in", "processed"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "in"),
        "data_folder_out": str(BROKER_DIR / "in"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # Without it kombu keeps its exchange table in ./control, wherever the process was started.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
elif not CELERY_BROKER_URL.startswith(("redis://", "rediss://", "amqp://", "memory://")):
    raise ImproperlyConfigured(f"CELERY_BROKER_URL must be redis://, rediss:// or filesystem://, not {CELERY_BROKER_URL!r}")
else:
    # Only short-lived send tasks travel through the broker (the outbox holds
    # the schedule), so a visibility timeout of one hour is plenty.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_TIME_LIMIT = 5 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 4 * 60
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fix-up closes the database connection around every task
# unless this is set; clinic/celery.py applies CONN_MAX_AGE instead, and the
# fix-up only recycles the connections after this many tasks.
CELERY_DB_REUSE_MAX = 1000
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = False
# Task modules not named tasks.py, which autodiscovery would miss.
CELERY_IMPORTS = ["patients.export_tasks"]

# --- API ------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "clinic.api.authentication.TwoFactorTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["clinic.api.permissions.IsClinicStaff"],
    "DEFAULT_FILTER_BACKENDS": ["clinic.api.filters.ApiFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "clinic.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "clinic.api.schema.AftercareAutoSchema",
    "EXCEPTION_HANDLER": "clinic.api.errors.exception_handler",
    # Token sign-in only; the patient link pages are plain views limited by clinic.ratelimit (PATIENT_LINK_RATE_PER_MINUTE).
    "DEFAULT_THROTTLE_RATES": {"login": "10/minute"},
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Aftercare API",
    "DESCRIPTION": "Post-procedure care for microneedling and fractional laser clinics.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from our own static files (no CDN), started by a script file, not an inline script (CSP).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # One name for the procedure choices wherever they appear (protocols, rules, filters).
    "ENUM_NAME_OVERRIDES": {
        "ProcedureEnum": "protocols.models.Procedure",
        "ReminderStatusEnum": "patients.models.reminder.REMINDER_STATUSES",
    },
}

# --- aftercare ------------------------------------------------------------
# How many reverse proxies we run in front of gunicorn, each appending to X-Forwarded-For.
# 0 (the default): the header is ignored and REMOTE_ADDR is the client.  With N, the
# N-th entry from the right is the client (clinic/client_address.py).  Set it only when
# gunicorn cannot be reached except through those proxies: anyone else could write the header.
AFTERCARE_TRUSTED_PROXIES = _int("AFTERCARE_TRUSTED_PROXIES", 0)
AFTERCARE_PATIENT_LINK_RATE_PER_MINUTE = _int("PATIENT_LINK_RATE_PER_MINUTE", 30, minimum=1)
AFTERCARE_SIGNED_LINK_MAX_AGE_DAYS = _int("SIGNED_LINK_MAX_AGE_DAYS", 14, minimum=1)
AFTERCARE_EXPORT_KEEP_HOURS = _int("EXPORT_KEEP_HOURS", 24, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}, "axes": {"level": "WARNING"}},
}

# --- reminders (the outbox in patients/reminders.py) ------------------------
# How many due rows one dispatcher transaction claims with one UPDATE.
AFTERCARE_REMINDER_BATCH_SIZE = _int("REMINDER_BATCH_SIZE", 200, minimum=1)
# A queued row whose send task has not started within this time is presumed
# lost with its broker message (Redis restarted, worker killed) and re-queued.
AFTERCARE_REMINDER_QUEUE_LEASE_SECONDS = _int("REMINDER_QUEUE_LEASE_SECONDS", 15 * 60, minimum=2)
# A row marked sending whose worker has not reported back within this time is
# sent again (the one duplicate window). Longer than the task's hard time
# limit, so a live worker always finishes or is killed before it expires.
AFTERCARE_REMINDER_SEND_LEASE_SECONDS = _int("REMINDER_SEND_LEASE_SECONDS", 10 * 60, minimum=2)
if AFTERCARE_REMINDER_SEND_LEASE_SECONDS <= EMAIL_TIMEOUT:
    raise ImproperlyConfigured("REMINDER_SEND_LEASE_SECONDS must be longer than EMAIL_TIMEOUT")
AFTERCARE_REMINDER_MAX_ATTEMPTS = _int("REMINDER_MAX_ATTEMPTS", 5, minimum=1)
# Back-off after a temporary failure (4xx, connection error): base × 4^(attempt−1), capped.
AFTERCARE_REMINDER_RETRY_BASE_SECONDS = _int("REMINDER_RETRY_BASE_SECONDS", 60, minimum=1)
AFTERCARE_REMINDER_RETRY_MAX_SECONDS = _int("REMINDER_RETRY_MAX_SECONDS", 6 * 3600, minimum=1)
# A step that was already this far in the past when the treatment was recorded
# (or rescheduled) is not emailed: "tonight, cleanse gently" two days late helps nobody.
AFTERCARE_REMINDER_LATE_GRACE_MINUTES = _int("REMINDER_LATE_GRACE_MINUTES", 60)
# Each worker process keeps its SMTP connection between sends (patients/mail_connection.py):
# closed after this many idle seconds (0: never reuse) and after this many messages.
AFTERCARE_SMTP_REUSE_IDLE_SECONDS = _int("SMTP_REUSE_IDLE_SECONDS", 30)
AFTERCARE_SMTP_REUSE_MAX_MESSAGES = _int("SMTP_REUSE_MAX_MESSAGES", 100, minimum=1)
# Unsubscribe links must keep working long after the email arrived.
AFTERCARE_REMINDER_UNSUBSCRIBE_LINK_DAYS = _int("REMINDER_UNSUBSCRIBE_LINK_DAYS", 180, minimum=1)
# Exactly one beat process runs these; django_celery_beat's DatabaseScheduler
# copies them into its tables on start.
CELERY_BEAT_SCHEDULE = {
    "dispatch-due-reminders": {
        "task": "patients.dispatch_due_reminders",
        "schedule": 60.0,
        "options": {"expires": 55},  # a backlog of dispatcher runs is pointless: the next one covers it
    },
    "sweep-reminder-leases": {
        "task": "patients.sweep_reminder_leases",
        "schedule": 180.0,
        "options": {"expires": 170},
    },
    # Alerts to clinicians whose task was lost or whose retry is due (patients.staff_alerts).
    "dispatch-staff-alerts": {
        "task": "patients.dispatch_staff_alerts",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
}
