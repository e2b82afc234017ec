"""Settings, all read from environment variables (django-environ).

With no environment at all the platform runs in the *embedded* mode: a SQLite file next to
the project, Celery tasks executed in-process, an in-process cache. Setting ``DATABASE_URL``
and ``REDIS_URL`` switches to the *production* mode: PostgreSQL, a Redis broker and a Redis
cache shared by every web and worker process.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

DEBUG = env.bool("DEBUG", default=False)
# The embedded mode needs a key to run at all; production must set its own. The "django-insecure-"
# prefix makes `check --deploy` flag a production that forgot to (security.W009).
SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-embedded-mode-set-SECRET_KEY-in-production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# The history pages show changes; "revert" would bypass the lifecycle rules in experiments.services
# (e.g. put a running experiment back to draft), so it is off.
SIMPLE_HISTORY_REVERT_DISABLED = True

# CORS (django-cors-headers), for browsers using the JavaScript SDK: only the API, only the
# listed origins (none by default), no cookies (the API authenticates with keys). Preflight
# OPTIONS requests are answered by the middleware, before authentication.
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/v1/"
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_METHODS = ("GET", "POST", "OPTIONS")
CORS_ALLOW_HEADERS = ("accept", "authorization", "content-type", "if-none-match")
CORS_EXPOSE_HEADERS = ("ETag", "X-Config-Version", "X-Degraded")
CORS_PREFLIGHT_MAX_AGE = 86400

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "corsheaders",
    "access",
    "experiments",
    "assignment",
    "analysis",
    "automation",
]

# The config.middleware classes are the Django/WhiteNoise ones, skipped for API_PATH_PREFIX where
# they do nothing (API keys, JSON, no cookies): the assignment hot path pays less.
API_PATH_PREFIX = "/api/v1/"
MIDDLEWARE = [
    "corsheaders.middleware.CorsMiddleware",  # first: preflights are answered without a key
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.WhiteNoiseMiddleware",
    "config.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "config.middleware.AuthenticationMiddleware",
    "config.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",  # API writes keep their history user
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if env.str("DATABASE_TEST_NAME", default=""):  # the test runner's shards each get their own test database
    DATABASES["default"]["TEST"] = {"NAME": env.str("DATABASE_TEST_NAME")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the in-process report task read while a request writes.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Analysis store: "django" (the database above) or "clickhouse" (reports read events and
# exposures from CLICKHOUSE_URL, http[s]://user:password@host:8123/database; docs/scaling.md).
ANALYTICS_BACKEND = env.str("ANALYTICS_BACKEND", default="django")
CLICKHOUSE_URL = env.str("CLICKHOUSE_URL", default="")
# Events and mirrored exposures wait in a Redis Stream (REDIS_URL) for the loader: at most this
# many batches (then the event API answers 503 + Retry-After); entries a loader took but did not
# acknowledge are claimed by another after CLICKHOUSE_LOADER_CLAIM_SECONDS; the loader runs
# every CLICKHOUSE_LOAD_SECONDS and inserts about CLICKHOUSE_LOAD_ROWS rows per INSERT.
CLICKHOUSE_STREAM_KEY = env.str("CLICKHOUSE_STREAM_KEY", default="abp:clickhouse:stream")
CLICKHOUSE_STREAM_MAX_ENTRIES = env.int("CLICKHOUSE_STREAM_MAX_ENTRIES", default=20_000)
CLICKHOUSE_LOADER_CLAIM_SECONDS = env.float("CLICKHOUSE_LOADER_CLAIM_SECONDS", default=60)
CLICKHOUSE_LOAD_SECONDS = env.float("CLICKHOUSE_LOAD_SECONDS", default=5)
CLICKHOUSE_LOAD_ROWS = env.int("CLICKHOUSE_LOAD_ROWS", default=50_000)

# --- Redis: broker and shared cache ------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="") or None

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="abp"),
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery ----------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env.str(
    "CELERY_RESULT_BACKEND", default=REDIS_URL or "cache+memory://"
)
# Embedded mode: no broker to talk to, so tasks run in the calling process.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXTENDED = True
CELERY_RESULT_EXPIRES = timedelta(days=1)
# A message a dead worker took is redelivered after this many seconds. Short: a report run
# renews its lock (REPORT_LOCK_SECONDS) by heartbeat, so an early redelivery of a live task waits
# for it instead of computing twice (analysis.tasks).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=120)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
REPORT_REFRESH_MINUTES = env.float("REPORT_REFRESH_MINUTES", default=15)
# Segment values with fewer units are merged into "(other)": a rare value can name a unit.
REPORT_SEGMENT_MIN_UNITS = env.int("REPORT_SEGMENT_MIN_UNITS", default=20)
# Default segment attributes (an experiment's own list, frozen with its plan, wins), the number of
# segment values kept per attribute (the rest is "(other)"), and the days in the per-day series.
REPORT_SEGMENT_ATTRIBUTES = env.list("REPORT_SEGMENT_ATTRIBUTES", default=["country", "platform", "plan"])
REPORT_MAX_SEGMENTS = env.int("REPORT_MAX_SEGMENTS", default=10)
#: Saved audiences a report breaks down by (``audience:<key>``), one aggregation query each.
REPORT_MAX_AUDIENCES = env.int("REPORT_MAX_AUDIENCES", default=5)
REPORT_DAILY_MAX_DAYS = env.int("REPORT_DAILY_MAX_DAYS", default=90)
# Expiry of a report's lock and heartbeat: a killed worker's report is given up this long after.
REPORT_LOCK_SECONDS = env.int("REPORT_LOCK_SECONDS", default=30)
EXPOSURE_FLUSH_SECONDS = env.float("EXPOSURE_FLUSH_SECONDS", default=10)
CELERY_BEAT_SCHEDULE = {
    "recompute-running-reports": {
        "task": "analysis.tasks.refresh_running_experiments",
        "schedule": timedelta(minutes=REPORT_REFRESH_MINUTES),
    },
    "flush-exposures": {
        "task": "assignment.tasks.flush_exposures",
        "schedule": timedelta(seconds=EXPOSURE_FLUSH_SECONDS),
    },
    "run-scheduled-actions": {
        "task": "automation.tasks.run_scheduled_actions",
        "schedule": timedelta(minutes=1),
    },
    "check-overdue-experiments": {
        "task": "automation.tasks.check_overdue_experiments",
        "schedule": timedelta(minutes=REPORT_REFRESH_MINUTES),
    },
}
if ANALYTICS_BACKEND == "clickhouse":
    CELERY_BEAT_SCHEDULE["load-clickhouse"] = {
        "task": "analysis.tasks.load_clickhouse",
        "schedule": timedelta(seconds=CLICKHOUSE_LOAD_SECONDS),
    }
# --- alerts (automation) ----------------------------------------------------------------------
# Console backend by default (embedded mode prints the mail); set e.g.
# EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend with EMAIL_HOST in production.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="experiments@localhost")
ALERT_MAX_ATTEMPTS = env.int("ALERT_MAX_ATTEMPTS", default=6)
ALERT_RETRY_BASE_SECONDS = env.float("ALERT_RETRY_BASE_SECONDS", default=10)
ALERT_REPORT_FAILURES = env.int("ALERT_REPORT_FAILURES", default=3)

# --- API --------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["access.authentication.APIKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["access.permissions.IsAdmin"],
    "DEFAULT_RENDERER_CLASSES": ["access.renderers.SafeJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["access.parsers.SafeJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "access.exceptions.json_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["access.throttling.APIKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": env.str("API_RATE_LIMIT", default="6000/min")},
    "UNAUTHENTICATED_USER": None,
}
API_KEY_CUSTOM_HEADER = "HTTP_AUTHORIZATION"
API_RATE_LIMIT_ENABLED = env.bool("API_RATE_LIMIT_ENABLED", default=True)
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=2 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES

SPECTACULAR_SETTINGS = {
    "TITLE": "Experimentation platform API",
    "DESCRIPTION": (
        "Define experiments, assign units deterministically, send outcomes and read results. "
        "Authenticate with `Authorization: Api-Key <key>`; scopes: client < analyst < admin."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # One named enum per set of choices, named for what it means: generated clients (see
    # tests/clients) get one type each instead of look-alikes such as a config and a definition
    # copy of the experiment status or a "role" enum per serializer.
    "ENUM_NAME_OVERRIDES": {
        "AggregationEnum": "experiments.models.Metric.Aggregation",
        "MetricKindEnum": "experiments.models.Metric.Kind",
        "MetricDirectionEnum": "experiments.models.Metric.Direction",
        "MetricRoleEnum": "experiments.models.ExperimentMetric.Role",
        "ExperimentStatusEnum": "experiments.models.Experiment.Status",
        "TargetingOperatorEnum": "experiments.models.TargetingRule.Operator",
        "ApprovalActionEnum": "experiments.models.ApprovalRequest.Action",
        "ApprovalStatusEnum": "experiments.models.ApprovalRequest.Status",
        "AssignmentReasonEnum": "assignment.serializers.ANSWER_REASONS",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "access.schema.document_error_responses",
    ],
}

# --- Auth, i18n, static -----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login/"  # people without admin access (viewers) log in here too

# --- Governance (docs/operations.md, "Roles and approvals") -------------------------------------
# team: only an experiment's owner and the members of its team may edit it; all: every editor.
EXPERIMENT_EDIT_SCOPE = env.str("EXPERIMENT_EDIT_SCOPE", default="all")
# Four eyes: starting and completing need a second person's approval. Off in the embedded mode;
# production should turn it on.
REQUIRE_APPROVAL = env.bool("REQUIRE_APPROVAL", default=False)
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Security (production sets these through the environment; see README) --------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"redact": {"()": "access.logging.RedactFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
