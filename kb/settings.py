"""Insight KB settings, driven by environment variables.

Every variable is read through a small typed helper that fails fast: a malformed value stops
start-up with a message naming the variable, instead of surfacing later as odd behaviour.
Defaults are secure: DEBUG off, HTTPS only. `make run` and the test suite set DEBUG=1 for a
zero-setup development site over plain HTTP (SQLite in the project folder).
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_origins(name: str) -> list[str]:
    """Comma-separated origins such as `https://kb.example.org`: scheme and host, no path."""
    origins = env_list(name, [])
    for origin in origins:
        scheme, _, rest = origin.partition("://")
        if scheme not in {"http", "https"} or not rest or "/" in rest:
            raise ImproperlyConfigured(
                f"{name} must list origins such as https://kb.example.org, got {origin!r}"
            )
    return origins


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if SECRET_KEY.startswith("replace-with"):
    # The placeholder of deploy/insightkb.env.example is public: never sign sessions with it.
    raise ImproperlyConfigured("SECRET_KEY is still the example's placeholder: set a new one")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off")
    # Only ever used by a local development site; production must set SECRET_KEY.
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "simple_history",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    # Swagger UI's and Redoc's files, served from our own static files instead of a CDN.
    "drf_spectacular_sidecar",
    "csp",
    "axes",
    "kb",
    "analysis",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username or address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "kb.urls"
WSGI_APPLICATION = "kb.wsgi.application"

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

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
except ValueError as error:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {error}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Worker processes share the database with the web process (and with tests), so the
    # test database is a file, and writers wait for each other instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        # WAL lets readers (pages, tests polling a run) proceed while a worker writes;
        # IMMEDIATE takes the write lock up front instead of failing on a lock upgrade.
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / "test-db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# Uploaded weights and analysis figures are private: nothing serves MEDIA_URL. They are
# streamed by kb/views/files.py to users who may see the run or model they belong to.
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))


def stored_files_storage() -> dict:
    """Where weights and figures are stored: MEDIA_ROOT by default, or with STORAGE_BACKEND=s3
    a bucket on S3 or an S3-compatible server that every web and worker machine shares."""
    backend = env_str("STORAGE_BACKEND", "filesystem")
    if backend == "filesystem":
        return {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    if backend != "s3":
        raise ImproperlyConfigured(f"STORAGE_BACKEND must be filesystem or s3, got {backend!r}")
    bucket = env_str("AWS_STORAGE_BUCKET_NAME")
    if not bucket:
        raise ImproperlyConfigured("AWS_STORAGE_BUCKET_NAME is required when STORAGE_BACKEND=s3")
    options = {
        "bucket_name": bucket,
        # Unset values fall back to boto3's own chain (instance roles, ~/.aws).
        "endpoint_url": env_str("AWS_S3_ENDPOINT_URL") or None,
        "region_name": env_str("AWS_S3_REGION_NAME") or None,
        "access_key": env_str("AWS_ACCESS_KEY_ID") or None,
        "secret_key": env_str("AWS_SECRET_ACCESS_KEY") or None,
        "addressing_style": env_str("AWS_S3_ADDRESSING_STYLE") or None,
        "location": env_str("AWS_LOCATION"),
        # Private: no ACL is sent (the bucket's own, private by default, applies), and any URL
        # the storage makes is signed. Files reach users only through kb/views/files.py.
        "default_acl": None,
        "querystring_auth": True,
        # Two models' weights uploaded under one file name must never replace each other.
        "file_overwrite": False,
        # A file read from the bucket spills to a temporary file past this, not into memory.
        "max_memory_size": 8 * 1024 * 1024,
    }
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}


STORAGES = {
    "default": stored_files_storage(),
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Uploaded weights can be large; anything bigger than this is streamed to a temporary file.
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# The largest weights file a model may carry (the API refuses a bigger body before reading it).
WEIGHTS_MAX_UPLOAD_SIZE = env_int("WEIGHTS_MAX_UPLOAD_SIZE", 1024 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024, minimum=1024)
# Largest transcript file (.txt, .docx, .vtt, .srt) the interview form and API accept.
TRANSCRIPT_MAX_UPLOAD_SIZE = env_int("TRANSCRIPT_MAX_UPLOAD_SIZE", 5 * 1024 * 1024, minimum=1024)
# Largest REFI-QDA file (.qdc, .qdpx) the exchange import accepts, page and API; a .qdpx may
# unpack to at most 5 times this (kb.exchange).
EXCHANGE_MAX_UPLOAD_SIZE = env_int("EXCHANGE_MAX_UPLOAD_SIZE", 20 * 1024 * 1024, minimum=1024)

# --- HTTPS, cookies and response headers (`check --deploy` passes with the defaults) ---------
# All on unless DEBUG is, so that `make run` and the tests work over plain HTTP.
# SECURE_SSL_REDIRECT=false: a proxy in front redirects HTTP to HTTPS itself, so
# `check --deploy` takes its missing redirect (security.W008) on the operator's word.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SILENCED_SYSTEM_CHECKS = [] if SECURE_SSL_REDIRECT or DEBUG else ["security.W008"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_HTTPONLY = True
# Browsers send these cookies back over HTTPS only. false only for a site on plain HTTP that
# nobody reaches from outside the machine (a loopback benchmark): logins would not stick.
SECURE_COOKIES = env_bool("SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
# Forms posted from another origin than the request's own (a proxy that terminates TLS
# without saying so, another port): list them, e.g. https://kb.example.org.
CSRF_TRUSTED_ORIGINS = env_origins("CSRF_TRUSTED_ORIGINS")
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- Proxies in front of the site (kb/client_address.py) -------------------------------------
# How many reverse proxies, each appending to X-Forwarded-For, stand between clients and this
# site. 0: clients connect directly and REMOTE_ADDR is the client; X-Forwarded-For is ignored,
# since anyone can send it. Login lockouts, the survey-link rate limit and the API throttles
# all count per the address this gives.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
# Only when the proxy overwrites X-Forwarded-Proto on every request: otherwise a client could
# claim HTTPS itself. Behind a TLS proxy that does not, set SECURE_SSL_REDIRECT=false instead.
if env_bool("PROXY_SETS_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Content-Security-Policy (django-csp): nothing inline, nothing from another site ---------
# Pages and the API docs load scripts and styles only from static files; colours a page
# needs at run time are set by kb/static/kb/site.js through the CSSOM, which CSP allows.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        # Swagger UI and the admin draw a few icons from data: URIs.
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Login protection (django-axes) ------------------------------------------------------------
# Each failed login counts against the username and, separately, against the client address:
# the first stops many addresses guessing one account's password, the second one address
# trying many accounts. 10 failures within the cool-off lock that username or address out
# for 15 minutes from the last failure: a person who mistypes is not stopped, an online
# guesser gets at most ~1000 tries a day per account, hopeless against passwords that pass
# the validators above. The database handler shares counts between web processes and
# machines. `manage.py axes_reset` lifts a lockout early.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "kb.client_address.client_address"
# Failures are kept (they are the lockout); a log of every successful login is not.
AXES_DISABLE_ACCESS_LOG = True

# Celery: Redis is the broker in production and in CI. `make run` switches to kombu's
# filesystem transport when no Redis answers, so the demo works on a bare laptop.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
# A job's claim lasts this long past its last progress report; a job whose worker died is
# claimed again (and sent again by the sweeper) once it runs out.
ANALYSIS_JOB_LEASE_SECONDS = env_int("ANALYSIS_JOB_LEASE_SECONDS", 120, minimum=1)
# Claims of one job before its run fails: each claim after the first follows a lost worker.
ANALYSIS_JOB_MAX_ATTEMPTS = env_int("ANALYSIS_JOB_MAX_ATTEMPTS", 3, minimum=1)
ANALYSIS_SOFT_TIME_LIMIT = env_int("ANALYSIS_SOFT_TIME_LIMIT", 3600, minimum=10)
# How often each worker looks for runs the broker never got and jobs whose lease ran out.
ANALYSIS_SWEEP_SECONDS = env_int("ANALYSIS_SWEEP_SECONDS", 10, minimum=1)
# The web process must not hang on a dead broker: connect for at most a second, retry a
# publish once (a pooled connection may be stale after a Redis restart), then give up; the run
# stays saved and the workers' sweeper sends it once the broker answers (analysis/dispatch.py).
CELERY_BROKER_CONNECTION_TIMEOUT = 1
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
# A pool process loads torch when it starts (analysis/tasks.py): on a busy two-core host that
# took longer than Celery's default 4 s, and the worker killed and restarted it in a loop.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = env_int("CELERY_WORKER_PROC_ALIVE_TIMEOUT", 60, minimum=4)
# A worker started while the broker is down waits for it, however long that takes.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {
    "socket_connect_timeout": 1,
    # A publish on a half-open connection (the broker vanished without closing it) fails
    # instead of waiting forever.
    "socket_timeout": 5,
    # Redis hands an unacknowledged message out again after this long. It stays above the
    # hard time limit of the longest job, so a job that is still running is never delivered
    # twice; a worker that died is recovered sooner by the sweeper (analysis/dispatch.py).
    "visibility_timeout": ANALYSIS_SOFT_TIME_LIMIT + 60 + 300,
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(env_str("CELERY_FILESYSTEM_DIR", str(BASE_DIR / "var" / "broker")))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
ANALYSIS_QUEUE = env_str("ANALYSIS_QUEUE", "analysis")

# --- REST API (kb/api/) ---------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header turns "not signed in" into a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "kb.api.schema.KbAutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["kb.api.parsers.LimitedJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "kb.api.pagination.KbPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "kb.api.throttles.AnonThrottle",
        "kb.api.throttles.UserThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("API_THROTTLE_ANON", "60/minute"),
        "user": env_str("API_THROTTLE_USER", "1200/minute"),
    },
    "EXCEPTION_HANDLER": "kb.api.exceptions.api_exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Insight KB API",
    "DESCRIPTION": (
        "Interviews, findings, insights, architecture changes and measured outcomes. "
        "Authenticate with a session (and CSRF token) or `Authorization: Token <key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/",
    # The docs page loads nothing from another site (drf-spectacular-sidecar's copies).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ResearcherRoleEnum": "kb.models.people.Researcher.Role",
        "InsightStatusEnum": "kb.models.insights.Insight.Status",
        "ChangeStatusEnum": "kb.models.insights.ArchitectureChange.Status",
        "FindingStatusEnum": "kb.models.subjects.Finding.Status",
        "RunStatusEnum": "analysis.models.AnalysisRun.Status",
        "JobStatusEnum": "analysis.models.AnalysisJob.Status",
        "InterviewStatusEnum": "kb.models.surveys.Interview.Status",
        "FindingKindEnum": "kb.models.subjects.Finding.Kind",
        "SubjectModelKindEnum": "kb.models.subjects.SubjectModel.Kind",
        "RunKindEnum": "analysis.models.AnalysisRun.Kind",
        "QuestionKindEnum": "kb.models.surveys.Question.Kind",
        "HighlightSourceEnum": "kb.models.codebook.Highlight.Source",
        "OutcomeSourceEnum": "kb.models.insights.Outcome.Source",
    },
}

# Logs go to the console as one line per message (a traceback after an error); no request
# body or form is ever logged. A server error is also mailed to ADMINS (when DEBUG is off) as
# Django's report, which kb.reporting's filter keeps free of personal data: the URL, the view
# and the traceback, never frame locals, posted values or settings.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"require_debug_false": {"()": "django.utils.log.RequireDebugFalse"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "mail_admins": {
            "class": "django.utils.log.AdminEmailHandler",
            "level": "ERROR",
            "filters": ["require_debug_false"],
            "include_html": True,
        },
    },
    # Replaces Django's own "django" handlers (its console copy would print each line twice).
    "loggers": {"django": {"handlers": ["mail_admins"], "level": "INFO"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}


def env_admins(name: str) -> list[tuple[str, str]]:
    """`Name:address,Name:address`: who is mailed a report of each server error."""
    admins = []
    for entry in env_list(name, []):
        person, separator, address = entry.rpartition(":")
        if not separator or not person.strip() or "@" not in address:
            raise ImproperlyConfigured(
                f"{name} must be name:address pairs separated by commas, got {entry!r}"
            )
        admins.append((person.strip(), address.strip()))
    return admins


ADMINS = env_admins("ADMINS")
SERVER_EMAIL = env_str("SERVER_EMAIL", "insight-kb@localhost")
# The SMTP server error reports (and nothing else) are sent through.
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_EXCEPTION_REPORTER_FILTER = "kb.reporting.PersonalDataFreeFilter"
DEFAULT_EXCEPTION_REPORTER = "kb.reporting.PersonalDataFreeReporter"
# The admin's history "revert" saves an old version whole, past every service rule (a measured
# change, a frozen run): off.
SIMPLE_HISTORY_REVERT_DISABLED = True

# --- Web pages: cache and rate limits (kb/views/) ---------------------------------------------
# The survey-link rate limit counts in the default cache. The local-memory cache counts per
# process; with several web processes set CACHE_URL to a Redis URL so they share one count.
_cache_url = env_str("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cache_url}
        if _cache_url
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# Submissions through survey links per client address and window.
SURVEY_RESPONSE_RATE_LIMIT = env_int("SURVEY_RESPONSE_RATE_LIMIT", 10, minimum=1)
SURVEY_RESPONSE_RATE_WINDOW = env_int("SURVEY_RESPONSE_RATE_WINDOW", 3600, minimum=1)
