"""The `cdp` command: serve, db, clients, sources, policies, openapi, keys, audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cdp.config import Settings

app = typer.Typer(help="cdp: privacy-compliant customer data platform", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
clients_app = typer.Typer(help="API clients.", no_args_is_help=True)
sources_app = typer.Typer(help="Tracking sources.", no_args_is_help=True)
policies_app = typer.Typer(help="Policy files.", no_args_is_help=True)
openapi_app = typer.Typer(help="The OpenAPI document.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(clients_app, name="clients")
app.add_typer(sources_app, name="sources")
app.add_typer(policies_app, name="policies")
app.add_typer(openapi_app, name="openapi")

CLI_ACTOR = "operator:cli"
OPENAPI_PATH = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def _fail(message: str, code: int = 1) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _runtime() -> object:
    from cdp.app import build_runtime
    from cdp.policy import PolicyInvalid

    try:
        rt = build_runtime(Settings())
    except PolicyInvalid as exc:
        _fail(f"policy invalid:\n{exc}")
    from cdp.db import schema_is_current, upgrade

    if not schema_is_current(rt.engine):
        if rt.settings.is_embedded:
            upgrade(rt.settings.resolved_database_url())
        else:
            _fail("database schema is not at head: run `cdp db upgrade`")
    return rt


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Run the API; an embedded SQLite database is migrated on first start."""
    from cdp.serve import run

    run(host=host, port=port, workers=workers)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Migrate the database (to REVISION) and the key store to their latest revisions."""
    from cdp.crypto import upgrade_keystore
    from cdp.db import upgrade

    settings = Settings()
    upgrade(settings.resolved_database_url(), revision)
    upgrade_keystore(settings.resolved_keystore_url())
    typer.echo("database and key store at head")


@db_app.command("check")
def db_check() -> None:
    """Fail when the ORM models and the migrations differ (checked on a scratch database)."""
    import tempfile

    from cdp.db import make_engine, schema_drift, upgrade

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/check.db"
        upgrade(url)
        engine = make_engine(url)
        diffs = schema_drift(engine)
        engine.dispose()
    if diffs:
        for diff in diffs:
            typer.echo(f"drift: {diff}", err=True)
        _fail("models and migrations differ: add an Alembic revision")
    typer.echo("models and migrations agree")


@clients_app.command("create")
def clients_create(
    name: Annotated[str, typer.Option(help="Client name.")],
    role: Annotated[str, typer.Option(help="Role from roles.yaml.")],
    purpose: Annotated[list[str] | None, typer.Option(help="Allowed purpose (repeat).")] = None,
    organisation: Annotated[str | None, typer.Option(help="Organisation (art. 21).")] = None,
    entrusted: Annotated[bool, typer.Option(help="An entrusted processor.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Register an API client and print its id and secret (shown once)."""
    from cdp.api import Runtime
    from cdp.audit.service import RequestContext
    from cdp.auth import service
    from cdp.db import unit_of_work
    from cdp.errors import CdpError

    rt = _runtime()
    assert isinstance(rt, Runtime)
    try:
        with unit_of_work(rt.sessions) as session:
            session.info["ctx"] = RequestContext(rt.policy.version)
            client, secret = service.create_client(
                session,
                policy=rt.policy,
                actor=CLI_ACTOR,
                name=name,
                role=role,
                purposes=purpose or None,
                organisation=organisation,
                entrusted=entrusted,
                scrypt_n=rt.settings.secret_scrypt_n,
            )
    except CdpError as exc:
        _fail(f"error: {exc.detail}")
    if as_json:
        out = {
            "client_id": client.id,
            "client_secret": secret,
            "role": client.role,
            "purposes": client.purposes,
        }
        typer.echo(json.dumps(out))
    else:
        typer.echo(
            f"client_id:     {client.id}\nclient_secret: {secret}\n"
            f"role:          {client.role}\npurposes:      {' '.join(client.purposes)}"
        )
        typer.echo("The secret is shown only now; store it safely.", err=True)


@clients_app.command("list")
def clients_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List API clients."""
    from cdp.api import Runtime
    from cdp.auth import service
    from cdp.db import unit_of_work

    rt = _runtime()
    assert isinstance(rt, Runtime)
    with unit_of_work(rt.sessions) as session:
        rows = [
            {"client_id": c.id, "name": c.name, "role": c.role, "revoked": c.revoked_at is not None}
            for c in service.list_clients(session, limit=10_000)
        ]
    for row in rows:
        typer.echo(
            json.dumps(row)
            if as_json
            else f"{row['client_id']}  {row['role']:<10} "
            f"{'revoked ' if row['revoked'] else ''}{row['name']}"
        )


@clients_app.command("revoke")
def clients_revoke(client_id: str) -> None:
    """Revoke a client; its tokens stop working at once."""
    from cdp.api import Runtime
    from cdp.audit.service import RequestContext
    from cdp.auth import service
    from cdp.db import unit_of_work
    from cdp.errors import CdpError

    rt = _runtime()
    assert isinstance(rt, Runtime)
    try:
        with unit_of_work(rt.sessions) as session:
            session.info["ctx"] = RequestContext(rt.policy.version)
            service.revoke_client(session, actor=CLI_ACTOR, client_id=client_id)
    except CdpError as exc:
        _fail(f"error: {exc.detail}")
    typer.echo(f"revoked {client_id}")


@sources_app.command("create")
def sources_create(
    name: Annotated[str, typer.Option(help="Source name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a tracking source and print its write key (shown once)."""
    from cdp.api import Runtime
    from cdp.audit.service import RequestContext
    from cdp.auth import service
    from cdp.db import unit_of_work

    rt = _runtime()
    assert isinstance(rt, Runtime)
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        source, key = service.create_source(session, actor=CLI_ACTOR, name=name)
    if as_json:
        typer.echo(json.dumps({"source_id": source.id, "write_key": key}))
    else:
        typer.echo(f"source_id: {source.id}\nwrite_key: {key}")


@policies_app.command("check")
def policies_check(
    directory: Annotated[Path | None, typer.Argument(help="Policy folder.")] = None,
) -> None:
    """Validate policy files; print file, line and reason for each error."""
    from cdp.policy import PolicyInvalid, load_policy

    folder = directory or Settings().policy_dir
    try:
        policy = load_policy(folder)
    except PolicyInvalid as exc:
        for issue in exc.issues:
            typer.echo(str(issue), err=True)
        _fail(f"{len(exc.issues)} error(s) in {folder}")
    typer.echo(
        f"policy ok: {policy.version} ({len(policy.purposes)} purposes, "
        f"{len(policy.fields)} fields, {len(policy.roles)} roles, {len(policy.notices)} notices)"
    )


def openapi_document() -> str:
    from cdp.app import create_app

    # The export signs nothing; a fixed secret keeps it from creating a development key file.
    settings = Settings(jwt_secret="openapi-export", log_json=False)  # noqa: S106
    doc = create_app(settings).openapi()
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


@openapi_app.command("export")
def openapi_export(
    out: Annotated[Path, typer.Option(help="Where to write.")] = OPENAPI_PATH,
    check: Annotated[bool, typer.Option("--check", help="Fail when the file is stale.")] = False,
) -> None:
    """Write openapi/openapi.json; with --check, fail when it differs from the code."""
    text = openapi_document()
    if check:
        if not out.exists() or out.read_text(encoding="utf-8") != text:
            _fail(f"{out} is stale: run `cdp openapi export`")
        typer.echo(f"{out} is current")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}")


# --- keys: master-key rotation and status; rights replay-erasures (crypto/) --------------------

keys_app = typer.Typer(
    help="Encryption keys: master-key rotation and status.", no_args_is_help=True
)
rights_app = typer.Typer(help="Data-subject rights.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(rights_app, name="rights")


def _crypto(settings: Settings) -> object:
    """The Crypto of these settings, with an embedded key store migrated if need be."""
    from cdp.crypto import (
        Crypto,
        KmsUnavailable,
        MasterKeyConfigError,
        keystore_is_current,
        master_key_provider,
        upgrade_keystore,
    )
    from cdp.db import make_engine

    url = settings.resolved_keystore_url()
    engine = make_engine(url)
    if not keystore_is_current(engine):
        if url.startswith("sqlite") and settings.auto_migrate:
            upgrade_keystore(url)
        else:
            _fail("key store schema is not at head: run `cdp keys upgrade`")
    try:
        provider = master_key_provider(settings)
        _ = provider.current_id
    except (MasterKeyConfigError, OSError) as exc:
        _fail(f"master key: {exc}")
    except KmsUnavailable as exc:
        _fail(f"master key: {exc.detail} (CDP_VAULT_ADDR, CDP_VAULT_TOKEN, CDP_VAULT_NAMESPACE)")
    return Crypto(engine, provider)


@keys_app.command("upgrade")
def keys_upgrade() -> None:
    """Migrate the key store (CDP_KEYSTORE_URL) to the latest revision."""
    from cdp.crypto import upgrade_keystore

    upgrade_keystore(Settings().resolved_keystore_url())
    typer.echo("key store at head")


@keys_app.command("rotate")
def keys_rotate(
    batch: Annotated[int, typer.Option(min=1, help="Data keys re-wrapped per transaction.")] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    rewrap_only: Annotated[
        bool,
        typer.Option(
            "--rewrap-only",
            help="Add no master-key version; move data keys to the current one (e.g. after "
            "the Vault transit key was rotated in Vault).",
        ),
    ] = False,
) -> None:
    """New master-key version, re-wrap every data key online, retire versions nothing uses."""
    from cdp.crypto import Crypto, KmsUnavailable, LocalMasterKeys, VaultTransitKeys
    from cdp.crypto.masterkey import add_version, retire_version

    settings = Settings()
    crypto = _crypto(settings)
    assert isinstance(crypto, Crypto)
    provider = crypto.provider
    path = provider.path if isinstance(provider, LocalMasterKeys) else None
    vault = provider if isinstance(provider, VaultTransitKeys) else None
    try:
        if path is not None and not rewrap_only:
            new_id = add_version(path)
            if not as_json:
                typer.echo(f"master key {new_id} added to {path} and made current")
        if vault is not None and not rewrap_only:
            new_id = vault.rotate_master()
            if not as_json:
                typer.echo(f"Vault transit key {vault.key} rotated: {new_id} is current")
        report = crypto.rotate(batch=batch)
    except KmsUnavailable as exc:
        _fail(f"rotation stopped, run it again when Vault answers: {exc.detail}")
    retired: list[str] = []
    if path is not None and report.failed == 0:
        for version in report.unused_versions:
            retire_version(path, version)
            retired.append(version)
    if as_json:
        typer.echo(json.dumps({**report.as_dict(), "retired": retired}))
    else:
        per_version = ", ".join(f"{k}: {n}" for k, n in report.deks_per_version.items()) or "-"
        typer.echo(
            f"re-wrapped {report.rewrapped} data keys and {report.index_keys_rewrapped} index "
            f"key(s) under {report.target} in {report.seconds:.1f} s; in use: {per_version}"
        )
        if retired:
            typer.echo(f"retired from {path}: {', '.join(retired)}")
        elif vault is not None and report.unused_versions and not report.failed:
            floor = min(int(v[1:]) for v in [report.target, *report.deks_per_version])
            typer.echo(
                f"no longer used: {', '.join(report.unused_versions)}; Vault can stop decrypting "
                f"them: vault write {vault.mount}/keys/{vault.key}/config "
                f"min_decryption_version={floor}"
            )
        elif path is None and report.unused_versions:
            typer.echo(
                f"no longer used: {', '.join(report.unused_versions)}; remove them from "
                "CDP_MASTER_KEY once every process runs with the new value"
            )
    if report.failed:
        _fail(f"{report.failed} data key(s) could not be unwrapped; old versions kept")


@keys_app.command("status")
def keys_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Master-key versions, the current one, data keys per version, the index key's version."""
    from cdp.crypto import Crypto

    crypto = _crypto(Settings())
    assert isinstance(crypto, Crypto)
    status = crypto.status()
    if as_json:
        typer.echo(json.dumps(status.as_dict()))
        return
    per_version = ", ".join(f"{k}: {n}" for k, n in status.deks_per_version.items()) or "-"
    typer.echo(
        f"current master key:  {status.current}\n"
        f"configured versions: {', '.join(status.versions)}\n"
        f"data keys:           {status.deks_total} ({per_version})\n"
        f"index key under:     {status.index_key_version or '- (not created yet)'}\n"
        f"unused versions:     {', '.join(status.unused_versions) or '-'}\n"
        f"erasures recorded:   {status.erasures}"
    )


@rights_app.command("replay-erasures")
def rights_replay_erasures(
    since: Annotated[
        str | None, typer.Option(help="Only erasures after this ISO 8601 time.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List, change nothing.")] = False,
) -> None:
    """Re-apply the erasure ledger after restoring a backup (key store and main database)."""
    from datetime import UTC, datetime

    from cdp.crypto import Crypto

    after = None
    if since:
        try:
            after = datetime.fromisoformat(since)
        except ValueError:
            _fail("--since must be an ISO 8601 date or time")
        assert after is not None
        after = after if after.tzinfo else after.replace(tzinfo=UTC)
    settings = Settings()
    crypto = _crypto(settings)
    assert isinstance(crypto, Crypto)
    ledger = crypto.erasures(after)
    if dry_run:
        for subject_id, erased_at in ledger:
            typer.echo(f"{erased_at.isoformat()}  {subject_id}")
        typer.echo(f"{len(ledger)} erasure(s) would be replayed")
        return
    # The main database's part is the rights domain's: replay_erasure(session, subject_id=...,
    # erased_at=...) deletes what a restored backup brought back, idempotently.
    import importlib

    try:
        replay = getattr(importlib.import_module("cdp.rights.service"), "replay_erasure", None)
    except ImportError:
        replay = None
    keys_shredded = rows_replayed = 0
    rt = _runtime() if replay is not None else None
    for subject_id, erased_at in ledger:
        keys_shredded += crypto.replay_erasure(subject_id, erased_at)
        if replay is not None:
            from cdp.api import Runtime
            from cdp.audit.service import RequestContext
            from cdp.db import unit_of_work

            assert isinstance(rt, Runtime)
            with unit_of_work(rt.sessions) as session:
                session.info["ctx"] = RequestContext(rt.policy.version)
                replay(session, subject_id=subject_id, erased_at=erased_at)
            rows_replayed += 1
    typer.echo(
        f"{len(ledger)} erasure(s) in the ledger: {keys_shredded} restored data key(s) shredded "
        f"again, {rows_replayed} subject(s) erased again in the main database"
    )
    if replay is None:
        typer.echo("warning: cdp.rights.service.replay_erasure is missing", err=True)


# --- notifier: the development outbox (notifier/) --------------------------------------------

notifier_app = typer.Typer(help="Messages to customers (one-time codes).", no_args_is_help=True)
app.add_typer(notifier_app, name="notifier")


@notifier_app.command("outbox")
def notifier_outbox(
    to: Annotated[str | None, typer.Option(help="Only messages to this address.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Messages the development notifier (CDP_NOTIFIER=outbox) kept, oldest first."""
    from cdp.crypto.blind_index import normalise
    from cdp.errors import InvalidIdentifier
    from cdp.notifier.outbox import Outbox

    settings = Settings()
    if settings.notifier != "outbox":
        _fail(f"CDP_NOTIFIER is {settings.notifier}: only the outbox notifier keeps messages")
    wanted = to
    if to is not None:
        kind = "email" if "@" in to else "phone"
        try:
            wanted = normalise(kind, to)
        except InvalidIdentifier:
            _fail(f"--to is not a valid {kind}")
    messages = Outbox(settings.data_dir / "outbox.jsonl").messages(wanted)
    if as_json:
        typer.echo(json.dumps(messages, ensure_ascii=False))
        return
    for m in messages:
        typer.echo(f"{m['at']}  {m['channel']}  {m['to']}  {m['subject']}\n{m['body']}\n")
    typer.echo(f"{len(messages)} message(s)")


# --- events: monthly partitions (events/) ---------------------------------------------------

events_app = typer.Typer(help="Tracked events.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@events_app.command("partitions")
def events_partitions(
    months_ahead: Annotated[
        int, typer.Option(min=0, max=24, help="Create partitions this many months ahead.")
    ] = 2,
) -> None:
    """Create the monthly partitions of the event table (PostgreSQL; run it monthly)."""
    from cdp.db import make_engine
    from cdp.events import partitions

    engine = make_engine(Settings().resolved_database_url())
    try:
        created = partitions.ensure(engine, months_ahead=months_ahead)
        names = partitions.existing(engine)
    finally:
        engine.dispose()
    if engine.dialect.name != "postgresql":
        typer.echo("SQLite keeps events in one table: nothing to do")
        return
    typer.echo(f"created: {', '.join(created) or '-'}\npartitions: {', '.join(names)}")


# --- audit: checkpoints, export, offline verification, public keys; db grant (audit/) ---------

audit_app = typer.Typer(
    help="The audit log: signed checkpoints, export, offline verification.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")


def _audit_signer(rt: object) -> object:
    from cdp.api import Runtime
    from cdp.audit.signing import SigningKeyError, cached_signer

    assert isinstance(rt, Runtime)
    try:
        return cached_signer(rt.extras, rt.settings.audit_signing_key_file, rt.settings.data_dir)
    except SigningKeyError as exc:
        _fail(str(exc), 2)
        raise  # unreachable: _fail exits


def _cli_time(value: str | None, name: str) -> object:
    from datetime import datetime

    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        _fail(f"{name} must be an RFC 3339 time with an offset, e.g. 2026-11-25T08:00:00+08:00", 2)
    return parsed


@audit_app.command("checkpoint")
def audit_checkpoint(
    force: Annotated[bool, typer.Option("--force", help="Also sign one at the head now.")] = False,
) -> None:
    """Sign the checkpoints that are due (N entries or M minutes since the last one).

    The API does this every minute; run it from cron where no API process runs."""
    from datetime import timedelta

    from cdp.api import Runtime
    from cdp.audit import checkpoints
    from cdp.audit.signing import Signer
    from cdp.errors import AuditChainBroken

    rt = _runtime()
    assert isinstance(rt, Runtime)
    signer = _audit_signer(rt)
    assert isinstance(signer, Signer)
    schedule = checkpoints.Schedule(
        every_entries=rt.settings.audit_checkpoint_every,
        every=timedelta(minutes=rt.settings.audit_checkpoint_minutes),
    )
    try:
        made = checkpoints.run_due(rt.sessions, signer=signer, schedule=schedule, force=force)
    except AuditChainBroken as exc:
        _fail(f"audit chain broken, nothing signed: {exc.detail}")
    for cp in made:
        typer.echo(f"checkpoint {cp.id}: entries {cp.from_seq}..{cp.seq} signed by {cp.key_id}")
    typer.echo(f"{len(made)} checkpoint(s) signed")


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    since: Annotated[str | None, typer.Option("--from", help="From this time (RFC 3339).")] = None,
    until: Annotated[str | None, typer.Option("--to", help="Before this time (RFC 3339).")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor.")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this subject id.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    purpose: Annotated[str | None, typer.Option(help="Only this purpose.")] = None,
) -> None:
    """Export the audit log with a signed manifest; check it with `cdp audit verify`."""
    from datetime import datetime

    from cdp.api import Runtime
    from cdp.audit.export import ExportFilter, start_export, stream
    from cdp.audit.service import RequestContext
    from cdp.audit.signing import Signer
    from cdp.db import unit_of_work

    if fmt not in ("jsonl", "csv"):
        _fail("--format must be jsonl or csv", 2)
    start, end = _cli_time(since, "--from"), _cli_time(until, "--to")
    assert start is None or isinstance(start, datetime)
    assert end is None or isinstance(end, datetime)
    rt = _runtime()
    assert isinstance(rt, Runtime)
    signer = _audit_signer(rt)
    assert isinstance(signer, Signer)
    wanted = ExportFilter(start, end, actor, subject, action, purpose)
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        plan = start_export(
            session,
            actor=CLI_ACTOR,
            fmt="csv" if fmt == "csv" else "jsonl",
            export_filter=wanted,
        )
    size = 0
    with out.open("wb") as target:
        for chunk in stream(rt.sessions, plan, signer, batch=rt.settings.audit_export_batch):
            target.write(chunk)
            size += len(chunk)
    typer.echo(f"wrote {out}: {size} bytes, chain head {plan.head_seq}, key {signer.key_id}")


@audit_app.command("verify")
def audit_verify(
    file: Annotated[Path, typer.Argument(help="An export written by `cdp audit export`.")],
    public_key: Annotated[
        Path, typer.Option("--public-key", help="Trusted public keys (PEM or keys JSON).")
    ],
) -> None:
    """Verify an export offline: exit 0 when it verifies, 1 naming the first bad sequence."""
    from cdp.audit import verify

    try:
        keys = verify.load_public_keys(public_key.read_bytes())
        report = verify.verify_file(file, keys)
    except (OSError, verify.Unreadable) as exc:
        _fail(f"cannot verify: {exc}", 2)
    typer.echo(report.summary(), err=not report.ok)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("public-key")
def audit_public_key(
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
) -> None:
    """The PEM public keys of every audit signing key, for `cdp audit verify --public-key`."""
    from cdp.api import Runtime
    from cdp.audit import checkpoints
    from cdp.audit.signing import Signer
    from cdp.db import unit_of_work

    rt = _runtime()
    assert isinstance(rt, Runtime)
    signer = _audit_signer(rt)
    assert isinstance(signer, Signer)
    with unit_of_work(rt.sessions) as session:
        keys = checkpoints.published_keys(session, signer)
    text = "".join(
        f"# audit signing key {k.key_id}{' (current)' if k.current else ''}\n{k.public_key_pem}"
        for k in keys
    )
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="ascii")
        typer.echo(f"wrote {len(keys)} public key(s) to {out}")


@db_app.command("grant")
def db_grant(
    role: Annotated[str, typer.Option("--role", help="The role the API connects as.")],
    apply: Annotated[
        bool, typer.Option("--apply", help="Run them on CDP_DATABASE_URL (as the owner).")
    ] = False,
) -> None:
    """PostgreSQL: GRANTs letting ROLE run the API but only INSERT/SELECT the audit tables.

    Migrations run as the owner of the tables; the API connects as ROLE. Re-run after every
    `cdp db upgrade` (new tables). Without --apply the statements are printed."""
    from sqlalchemy import text

    from cdp.audit.grants import grant_statements
    from cdp.db import make_engine

    try:
        statements = grant_statements(role)
    except ValueError as exc:
        _fail(str(exc), 2)
    if not apply:
        typer.echo("".join(f"{statement};\n" for statement in statements), nl=False)
        return
    url = Settings().resolved_database_url()
    if not url.startswith("postgresql"):
        _fail("cdp db grant applies to PostgreSQL only", 2)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()
    typer.echo(f"granted: {role} may only INSERT and SELECT the audit tables")


# --- retention: runs (retention/) -------------------------------------------------------------

retention_app = typer.Typer(help="Retention (PIPL art. 19).", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


@retention_app.command("run")
def retention_run(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be removed; remove nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Delete or anonymise what has outlived its purpose (retention.yaml, tracking plan)."""
    from cdp.api import Runtime
    from cdp.audit.service import RequestContext
    from cdp.db import unit_of_work
    from cdp.retention import service as retention

    rt = _runtime()
    assert isinstance(rt, Runtime)
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        record = retention.run(
            session, crypto=rt.crypto, policy=rt.policy, actor=CLI_ACTOR, dry_run=dry_run
        )
        report = retention.as_read(record)
    if as_json:
        typer.echo(json.dumps(report, default=str, ensure_ascii=False, indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"retention run {report['id']}{' (dry run)' if dry_run else ''}")
    for item in report["items"]:
        if item["count"] or item["held"]:
            what = item["table"] + (f" {item['name']}" if item["name"] else "")
            what += f" [{item['data_class']}]"
            held = f", {item['held']} held" if item["held"] else ""
            action = "anonymise" if item["action"] == "anonymise" else verb
            typer.echo(f"  {what}: {action} {item['count']} before {item['cutoff']}{held}")
    totals = ", ".join(f"{k}={v}" for k, v in sorted(report["totals"].items())) or "nothing"
    audit_part = report["audit"]
    typer.echo(
        f"totals: {totals}\naudit: {audit_part['eligible']} entries older than"
        f" {audit_part['keep_days']} days (kept: append-only, reported only)"
    )


segments_app = typer.Typer(help="Customer segments.", no_args_is_help=True)
demo_app = typer.Typer(help="Synthetic demo data (no real PI).", no_args_is_help=True)
app.add_typer(segments_app, name="segments")
app.add_typer(demo_app, name="demo")


@segments_app.command("refresh")
def segments_refresh(
    segment: Annotated[
        str | None, typer.Option("--segment", help="Only this segment (default: every one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Refresh membership snapshots, recording who entered and who left (run it on a schedule)."""
    from cdp.api import Runtime
    from cdp.audit.service import RequestContext
    from cdp.db import unit_of_work
    from cdp.errors import CdpError
    from cdp.segments import service

    rt = _runtime()
    assert isinstance(rt, Runtime)
    try:
        with unit_of_work(rt.sessions) as session:
            session.info["ctx"] = RequestContext(rt.policy.version)
            results = service.refresh(session, policy=rt.policy, actor=CLI_ACTOR, key=segment)
    except CdpError as exc:
        _fail(exc.detail)
    for r in results:
        row = {
            "segment": r.segment,
            "members": r.members,
            "entered": r.entered,
            "left": r.left,
            "refreshed_at": r.refreshed_at.isoformat(),
        }
        typer.echo(
            json.dumps(row)
            if as_json
            else f"{r.segment:<16} members={r.members} entered={r.entered} left={r.left}"
        )


@demo_app.command("seed")
def demo_seed(
    profiles: Annotated[int, typer.Option("--profiles", min=1, help="Customers to add.")] = 1000,
    events_per_profile: Annotated[
        int, typer.Option("--events-per-profile", min=0, help="Average events per customer.")
    ] = 10,
    random_seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 8,
) -> None:
    """Load synthetic customers, their activity (as rollups) and complaints; no real PI."""
    from cdp.api import Runtime
    from cdp.audit.service import RequestContext
    from cdp.db import unit_of_work
    from cdp.segments import seed

    rt = _runtime()
    assert isinstance(rt, Runtime)
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        result = seed.seed(
            session,
            policy=rt.policy,
            profiles=profiles,
            events_per_profile=events_per_profile,
            random_seed=random_seed,
            progress=lambda n: typer.echo(f"  {n} customers", err=True),
        )
    typer.echo(
        f"seeded {result.profiles} customers, {result.events} events"
        f" ({result.daily_rows} daily rollup rows), {result.complaints} complaints"
    )


def main() -> None:
    app(prog_name="cdp")


if __name__ == "__main__":
    main()


alerts_app = typer.Typer(help="Alerts and their webhook delivery.", no_args_is_help=True)
followups_app = typer.Typer(help="Follow-up plans and tasks.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
app.add_typer(followups_app, name="followups")


@alerts_app.command("run")
def alerts_run(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Evaluate every alert check, raise new alerts and deliver webhooks that are due."""
    from cdp.alerts import service as alerts
    from cdp.api import Runtime
    from cdp.audit.service import RequestContext
    from cdp.db import unit_of_work

    rt = _runtime()
    assert isinstance(rt, Runtime)
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        result = alerts.evaluate(session, policy=rt.policy, actor=CLI_ACTOR)
        raised = [
            {"id": a.id, "kind": a.kind, "severity": a.severity, "summary": a.summary}
            for a in result.raised
        ]
    if as_json:
        summary = {
            "checks": result.checks,
            "raised": raised,
            "updated": result.updated,
            "deliveries_attempted": result.deliveries.attempted,
            "deliveries_delivered": result.deliveries.delivered,
        }
        typer.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    typer.echo(
        f"{result.checks} checks: {len(raised)} new alerts, {result.updated} still"
        f" open; webhooks {result.deliveries.delivered}/{result.deliveries.attempted} delivered"
    )
    for alert in raised:
        typer.echo(f"  [{alert['severity']}] {alert['kind']}: {alert['summary']}")


@followups_app.command("triggers")
def followups_triggers(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Turn segment changes since the last run into tasks, for every triggered plan."""
    from cdp.api import Runtime
    from cdp.audit.service import RequestContext
    from cdp.db import unit_of_work
    from cdp.followups import service as followups

    rt = _runtime()
    assert isinstance(rt, Runtime)
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        results = followups.run_triggers(session, policy=rt.policy, actor=CLI_ACTOR)
    rows = [{"plan_id": r.plan_id, "changes": r.members, "created": r.created} for r in results]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(f"plan {row['plan_id']}: {row['created']} tasks from {row['changes']} changes")
