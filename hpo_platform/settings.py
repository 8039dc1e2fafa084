"""Settings of the HPO platform, all read from the environment (see README.md).

The embedded default needs no variable at all: a SQLite file under ``var/``, no Redis, DEBUG
on with a development secret. Production sets ``DATABASE_URL``, ``REDIS_URL``,
``SECRET_KEY``, ``DEBUG=0``, ``ALLOWED_HOSTS`` and ``CSRF_TRUSTED_ORIGINS``.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from hpo_platform.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_path,
    env_str,
    parse_database_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("HPO_VAR_DIR", BASE_DIR / "var")

_DEV_SECRET = "insecure-development-secret-do-not-use-in-production"
DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET if DEBUG else "")
if not DEBUG and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY == _DEV_SECRET):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random value of at least 50 characters when DEBUG is off "
        "(python -c 'import secrets; print(secrets.token_urlsafe(50))' makes one)."
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
for _origin in CSRF_TRUSTED_ORIGINS:
    if not _origin.startswith(("http://", "https://")):
        raise ImproperlyConfigured(
            f"CSRF_TRUSTED_ORIGINS entry {_origin!r} must start with http:// or https://."
        )

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from here: the docs work offline
    "channels",
    "django_q",
    "accounts",
    "studies",
    "trials",
    "workers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "hpo_platform.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hpo_platform.urls"
WSGI_APPLICATION = "hpo_platform.wsgi.application"
ASGI_APPLICATION = "hpo_platform.asgi.application"

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
                "accounts.portal.portal_context",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'hpo.sqlite3'}")
_database = parse_database_url(DATABASE_URL)
if _database["ENGINE"].endswith("sqlite3") and _database["NAME"] != ":memory:":
    _sqlite_path = Path(_database["NAME"])
    if not _sqlite_path.is_absolute():
        _sqlite_path = BASE_DIR / _sqlite_path
    _sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    _database["NAME"] = str(_sqlite_path)
    # Tests on SQLite use a file too, so that real worker processes share it.
    _database["TEST"] = {"NAME": str(_sqlite_path.with_name("test_" + _sqlite_path.name))}
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, channel layer, task queue ----------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")


def redis_channel_layer(url: str) -> dict[str, object]:
    """channels-redis on ``url``. Its receive blocks in Redis for 5 s at a time, and
    redis-py 8 gives up reading a socket after 5 s by default: every idle websocket then
    died with "Timeout reading from ...". A longer read timeout keeps them open."""
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": url, "socket_timeout": 30, "socket_connect_timeout": 5}]},
    }


if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(
        f"REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix://."
    )
if REDIS_URL:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
else:
    # In-process only: the embedded default has no layer across processes, and the
    # websocket consumer falls back to the stored progress snapshot.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The ORM broker re-delivers a task whose worker died (Redis acknowledges nothing), so it
# is the default on every database; Q_BROKER=redis opts into the Redis broker.
Q_BROKER = env_str("Q_BROKER", "orm")
if Q_BROKER not in {"orm", "redis"}:
    raise ImproperlyConfigured(f"Q_BROKER={Q_BROKER!r} is not allowed; use 'orm' or 'redis'.")
if Q_BROKER == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("Q_BROKER=redis needs REDIS_URL.")
Q_CLUSTER: dict[str, object] = {
    "name": "hpo",
    "workers": env_int("Q_WORKERS", 1, minimum=1),
    "timeout": env_int("Q_TIMEOUT", 3600, minimum=1),
    "retry": env_int("Q_RETRY", 3900, minimum=2),
    "max_attempts": 1,
    "catch_up": False,
    # The ORM broker looks for new tasks this often (seconds): a trial's task starts at most
    # this long after it was dispatched.
    "poll": env_float("Q_POLL", 0.1, minimum=0.01),
    # A node takes at most as many tasks at once as it has workers: enough to start a
    # whole study's first wave together, never hoarding work another node could run.
    "bulk": env_int("Q_WORKERS", 1, minimum=1),
    "label": "Tasks",
}
if Q_BROKER == "orm":
    Q_CLUSTER["orm"] = "default"
else:
    Q_CLUSTER["redis"] = REDIS_URL
if int(Q_CLUSTER["retry"]) <= int(Q_CLUSTER["timeout"]):  # type: ignore[call-overload]
    raise ImproperlyConfigured("Q_RETRY must exceed Q_TIMEOUT, or a running task is delivered twice.")

# --- Auth, i18n, static and media --------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/studies/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# Anyone may make an account at /accounts/signup/ when on; otherwise admins make users (or
# invite them: an invitation link lets its holder sign up).
HPO_SIGNUP_OPEN = env_bool("HPO_SIGNUP_OPEN", False)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env_path("STATIC_ROOT", VAR_DIR / "staticfiles")
MEDIA_URL = "media/"
MEDIA_ROOT = env_path("MEDIA_ROOT", VAR_DIR / "media")

# --- Security (``manage.py check --deploy`` is clean with DEBUG off) -----------------------
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(
        f"LOG_LEVEL={LOG_LEVEL!r} is not a level; use DEBUG, INFO, WARNING, ERROR or CRITICAL."
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# --- REST API (/api/v1/) --------------------------------------------------------------------
REST_FRAMEWORK = {
    "EXCEPTION_HANDLER": "hpo_platform.api_errors.exception_handler",
    # Token first: its authenticate_header makes a missing or bad credential a 401 (with
    # the session first DRF answers 403).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "accounts.api_common.Pagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
    # JSON bodies only (others get a 415 naming the type); the upload view takes multipart.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # Login and token endpoints are throttled (per client address); see accounts.api.
    "DEFAULT_THROTTLE_RATES": {
        "login": env_str("HPO_LOGIN_RATE", "10/min"),
        "token": env_str("HPO_TOKEN_RATE", "30/min"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "HPO platform API",
    "DESCRIPTION": (
        "Workspaces, data sets, studies, trials, progress, logs, artifacts and plots. "
        "Authenticate with a session (the portal) or an API token: `Authorization: Token <key>`."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "hpo_platform.api_schema.add_error_responses",
    ],
}
# Bodies above this are refused (413/400) before they are parsed; uploads have their own cap.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("HPO_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
HPO_UPLOAD_MAX_BYTES = env_int("HPO_UPLOAD_MAX_BYTES", 200 * 1024 * 1024, minimum=1024)
# Failed logins for one user name before it is locked out, and for how long (per client
# address, the login throttle applies).
HPO_LOGIN_LOCKOUT_FAILURES = env_int("HPO_LOGIN_LOCKOUT_FAILURES", 5, minimum=1)
HPO_LOGIN_LOCKOUT_SECONDS = env_int("HPO_LOGIN_LOCKOUT_SECONDS", 900, minimum=1)

# Throttle counters: shared through Redis when there is one, else per process.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "hpo"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Optuna storage ---------------------------------------------------------------------------
# Heartbeats of running trials; a trial silent for the grace period is failed and retried.
HPO_HEARTBEAT_INTERVAL = env_int("HPO_HEARTBEAT_INTERVAL", 10, minimum=1)
HPO_HEARTBEAT_GRACE = env_int("HPO_HEARTBEAT_GRACE", 60, minimum=1)

# --- Training on this machine -----------------------------------------------------------------
# Trials at once without a GPU (each in its own process); with GPUs, one trial per
# HPO_GPUS_PER_TRIAL GPUs (several: MirroredStrategy). HPO_GPUS="0,1" overrides detection.
HPO_CPU_SLOTS = env_int("HPO_CPU_SLOTS", 1, minimum=1)
HPO_GPUS_PER_TRIAL = env_int("HPO_GPUS_PER_TRIAL", 1, minimum=1)
# Only the best trial's model file is kept unless this is on.
HPO_KEEP_ALL_MODELS = env_bool("HPO_KEEP_ALL_MODELS", False)
# The module a slot process runs (the tests swap in one without TensorFlow).
HPO_TRIAL_MODULE = env_str("HPO_TRIAL_MODULE", "workers.engine.trial_process")
# A study stops as failed after this many trials in a row failed.
HPO_MAX_CONSECUTIVE_FAILURES = env_int("HPO_MAX_CONSECUTIVE_FAILURES", 5, minimum=1)

# --- RunPod executor (workers/runpod_executor.py) ----------------------------------------------
# Credentials are per workspace (accounts.CloudCredentials); these tune the client.
# The cloud's API base (runpod's own default); tests point it at the emulator.
HPO_RUNPOD_URL_BASE = env_str("HPO_RUNPOD_URL_BASE", "https://api.runpod.ai/v2")
# A cloud trial that has not ended after this long is cancelled and fails.
HPO_RUNPOD_TIMEOUT = env_int("HPO_RUNPOD_TIMEOUT", 3600, minimum=1)
# Seconds between stream polls of a running job.
HPO_RUNPOD_POLL_SECONDS = env_float("HPO_RUNPOD_POLL_SECONDS", 1.0, minimum=0.01)
# Transient errors (5xx, connection) on submit or poll: retries, exponential from this delay.
HPO_RUNPOD_RETRIES = env_int("HPO_RUNPOD_RETRIES", 4, minimum=0)
HPO_RUNPOD_BACKOFF = env_float("HPO_RUNPOD_BACKOFF", 0.5, minimum=0)
# Circuit breaker per endpoint: after this many failed submits in a row, trials go local at
# once for this long.
HPO_RUNPOD_BREAKER_FAILURES = env_int("HPO_RUNPOD_BREAKER_FAILURES", 3, minimum=1)
HPO_RUNPOD_BREAKER_SECONDS = env_int("HPO_RUNPOD_BREAKER_SECONDS", 300, minimum=1)
# Cloud trials of one study at once: min(study.concurrency, this).
HPO_RUNPOD_MAX_CONCURRENCY = env_int("HPO_RUNPOD_MAX_CONCURRENCY", 6, minimum=1)
# $/GPU-hour by gpu type (a workspace's CloudCredentials.gpu_type picks the row); env JSON
# replaces the table.
HPO_GPU_PRICES: dict[str, float] = {
    "A100": 2.17, "A100-80GB": 2.72, "H100": 4.18, "H200": 5.58, "L40S": 1.90, "L4": 0.69,
    "A40": 0.79, "A6000": 0.79, "RTX4090": 0.69, "RTX3090": 0.43,
}
if (_prices := env_str("HPO_GPU_PRICES", "")).strip():
    try:
        HPO_GPU_PRICES = {str(k): float(v) for k, v in json.loads(_prices).items()}
    except (ValueError, AttributeError, TypeError):
        raise ImproperlyConfigured("HPO_GPU_PRICES must be a JSON object of GPU type to $ per GPU hour.") from None
# A study stops dispatching once its trials cost this many dollars (empty: no limit).
HPO_STUDY_BUDGET_USD: float | None = env_float("HPO_STUDY_BUDGET_USD", -1.0) if env_str("HPO_STUDY_BUDGET_USD", "").strip() else None
