"""Settings from `CDP_*` environment variables, with defaults that run locally with nothing set."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_policy_dir() -> Path:
    # The repository's demo policy when run from a checkout; an explicit CDP_POLICY_DIR otherwise.
    here = Path(__file__).resolve().parents[2] / "policies"
    return here if here.is_dir() else Path("policies")


class Settings(BaseSettings):
    """Everything configurable; read once per process (or given to create_app in tests)."""

    model_config = SettingsConfigDict(env_prefix="CDP_", extra="ignore")

    data_dir: Path = Field(default=Path(".cdp"), description="Local state: dev keys, SQLite files.")
    database_url: str = Field(default="", description="SQLAlchemy URL; default SQLite in data_dir.")
    keystore_url: str = Field(default="", description="Key store URL; default its own SQLite file.")
    policy_dir: Path = Field(default_factory=_default_policy_dir)
    master_key: str | None = None
    master_key_file: Path | None = None
    # Where master keys live: `local` (the two settings above) or `vault` (HashiCorp Vault's
    # transit engine wraps the data keys; no master key ever enters the process).
    kms_provider: Literal["local", "vault"] = "local"
    vault_addr: str | None = Field(default=None, description="e.g. https://vault.internal:8200")
    vault_token: SecretStr | None = None
    vault_token_file: Path | None = Field(
        default=None, description="Re-read when it changes (a Vault Agent token sink)."
    )
    vault_namespace: str | None = Field(default=None, description="Vault Enterprise namespace.")
    vault_transit_mount: str = "transit"
    vault_transit_key: str = "cdp"
    vault_ca_cert: Path | None = Field(default=None, description="CA bundle for Vault's TLS.")
    vault_timeout_seconds: float = Field(default=5.0, gt=0)
    vault_retries: int = Field(default=3, ge=0, description="Retries on 5xx, 429 or no answer.")
    jwt_secret: str | None = None
    jwt_private_key_file: Path | None = None
    jwt_issuer: str = "cdp"
    jwt_audience: str = "cdp-api"
    token_ttl_seconds: int = 900
    subject_token_ttl_seconds: int = 600
    notifier: str = Field(
        default="outbox", description="outbox (development: kept under data_dir), smtp or webhook."
    )
    # Notifier `smtp`: the relay and sender; `webhook`: a URL receiving JSON (an SMS gateway).
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    smtp_sender: str = "no-reply@localhost"
    notifier_webhook_url: str | None = None
    notifier_webhook_secret: str | None = None
    # Customer verification (rights): codes per identifier per hour, requests per client IP.
    verification_per_identifier_per_hour: int = Field(default=5, ge=1)
    verification_ip_per_minute: int = Field(default=10, ge=1)
    verification_ip_burst: int = Field(default=30, ge=1)
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = 1024 * 1024
    rate_limit_per_minute: int = 1200
    rate_limit_burst: int = 200
    # scrypt cost for client secrets; tests lower it, the cost is stored with each hash.
    secret_scrypt_n: int = 2**14
    auto_migrate: bool = Field(
        default=True, description="Migrate an embedded SQLite database on start-up."
    )
    # Audit checkpoints (Ed25519): the key, and how often one is signed (entries or minutes).
    audit_signing_key_file: Path | None = Field(
        default=None, description="PEM Ed25519 private key; default a development key file."
    )
    audit_checkpoint_every: int = Field(default=1000, ge=1, description="Entries per checkpoint.")
    audit_checkpoint_minutes: float = Field(
        default=60, gt=0, description="A checkpoint at least this often, even with no entries."
    )
    audit_checkpoint_tick_seconds: float = Field(
        default=60, gt=0, description="How often the API checks whether a checkpoint is due."
    )
    audit_export_batch: int = Field(default=5000, ge=1, description="Rows read per export batch.")

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'cdp.db').resolve()}"

    def resolved_keystore_url(self) -> str:
        return self.keystore_url or f"sqlite:///{(self.data_dir / 'cdp-keys.db').resolve()}"

    @property
    def is_embedded(self) -> bool:
        return self.resolved_database_url().startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
