"""The Python peer of link-receiver for the registry benchmark (`make bench`, bench/registry/run.py).

What a competent Python team would ship for the same job: `POST /hooks/account-link` verified with the
`standardwebhooks` package, the event parsed and checked (schema version, webhook-id = the event's delivery
id, an RFC 3339 UTC timestamp, a physicalResourceId), then stored with the same durability and idempotency
as the Rust receiver, in the same schema (crates/link-registry/migrations/0001_registry.sql, applied by
`python py_registry.py migrate DATABASE`): one transaction per delivery holding the INSERT into `events`
keyed on webhook-id (ON CONFLICT DO NOTHING: a second delivery writes nothing and answers "duplicate"), the
upsert of the link row (the newer event timestamp wins, as in crates/link-registry/src/store.rs) and of the
newest complete inventory; committed before the 2xx (SQLite: WAL, synchronous=FULL; PostgreSQL: commit).
The answers carry the same messages as link-receiver's.

Two server setups, both production-grade, chosen by how it is started:
- WSGI, `gunicorn -k gthread` (`py_registry:wsgi_app`): worker processes with threads; sqlite3 and
  psycopg release the GIL while they wait on the disk or the database.
- ASGI, `uvicorn --loop uvloop --http httptools` (`py_registry:asgi_app`): one event loop per worker
  process; SQLite writes on a thread pool (what aiosqlite does), PostgreSQL through psycopg's async pool.

The database and the secret come from REGISTRY_DATABASE (sqlite:///PATH or postgresql://...) and
REGISTRY_SECRET (whsec_...). Split events (data.part) are not handled by this peer: the benchmark sends none.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import sqlite3
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY = 2 * 1024 * 1024
SCHEMA = Path(__file__).resolve().parents[2] / "crates/link-registry/migrations/0001_registry.sql"

# The statements of crates/link-registry/src/store.rs, with named parameters ({name} is rendered per driver).
INSERT_EVENT = (
    "INSERT INTO events (webhook_id, event_id, link_id, event_type, event_at, received_at, part_index, "
    "part_count, part_set, caller_arn, body) VALUES ({webhook_id}, {event_id}, {link_id}, {event_type}, "
    "{event_at}, {received_at}, NULL, NULL, NULL, NULL, {body}) ON CONFLICT (webhook_id) DO NOTHING"
)
UPSERT_LINK = (
    "INSERT INTO links (link_id, account_id, partition_name, region, stack_id, logical_resource_id, state, "
    "external_id, roles, regions, vpc_id, vpc_count, subnet_count, route_table_count, inventory_complete, "
    "caller_arn, linked_at, updated_at, unlinked_at, last_event_at, last_event_id) "
    "VALUES ({link_id}, {account_id}, {partition}, {region}, {stack_id}, {logical_resource_id}, {state}, "
    "{external_id}, {roles}, {regions}, {vpc_id}, {vpc_count}, {subnet_count}, {route_table_count}, "
    "{inventory_complete}, NULL, {linked_at}, {event_at}, {unlinked_at}, {event_at}, {event_id}) "
    "ON CONFLICT (link_id) DO UPDATE SET "
    "account_id = excluded.account_id, partition_name = excluded.partition_name, region = excluded.region, "
    "stack_id = excluded.stack_id, logical_resource_id = excluded.logical_resource_id, state = excluded.state, "
    "external_id = excluded.external_id, roles = excluded.roles, regions = excluded.regions, "
    "vpc_id = excluded.vpc_id, "
    "vpc_count = CASE WHEN excluded.inventory_complete = 1 THEN excluded.vpc_count ELSE links.vpc_count END, "
    "subnet_count = CASE WHEN excluded.inventory_complete = 1 THEN excluded.subnet_count "
    "ELSE links.subnet_count END, "
    "route_table_count = CASE WHEN excluded.inventory_complete = 1 THEN excluded.route_table_count "
    "ELSE links.route_table_count END, "
    "inventory_complete = excluded.inventory_complete, "
    "caller_arn = COALESCE(excluded.caller_arn, links.caller_arn), "
    "linked_at = CASE WHEN excluded.state = 'linked' AND (links.state <> 'linked' OR links.linked_at IS NULL) "
    "THEN excluded.linked_at ELSE links.linked_at END, "
    "updated_at = excluded.updated_at, unlinked_at = excluded.unlinked_at, "
    "last_event_at = excluded.last_event_at, last_event_id = excluded.last_event_id "
    "WHERE links.last_event_at < excluded.last_event_at "
    "OR (links.last_event_at = excluded.last_event_at AND links.last_event_id < excluded.last_event_id)"
)
UPSERT_INVENTORY = (
    "INSERT INTO inventories (link_id, event_id, event_at, body) VALUES ({link_id}, {event_id}, {event_at}, "
    "{inventory}) ON CONFLICT (link_id) DO UPDATE SET event_id = excluded.event_id, "
    "event_at = excluded.event_at, body = excluded.body WHERE inventories.event_at < excluded.event_at"
)


def render(sql: str, style: str) -> str:
    """{name} -> :name (sqlite3) or %(name)s (psycopg)."""
    return re.sub(r"\{(\w+)\}", (lambda m: f":{m[1]}") if style == "sqlite" else (lambda m: f"%({m[1]})s"), sql)


class Rejected(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def event_millis(stamp: str) -> int:
    if not isinstance(stamp, str) or not stamp.endswith("Z"):
        raise Rejected(400, "the body is not a link event: timestamp is not an RFC 3339 UTC time")
    try:
        t = datetime.fromisoformat(stamp)
    except ValueError:
        raise Rejected(400, "the body is not a link event: timestamp is not an RFC 3339 UTC time") from None
    return int(t.astimezone(timezone.utc).timestamp() * 1000)


def check(webhook: Webhook, headers: dict, body: bytes) -> dict:
    """Verifies the signature and the event; returns the row values to store."""
    try:
        event = webhook.verify(body, headers)
    except WebhookVerificationError as e:
        raise Rejected(401, f"signature check failed: {e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise Rejected(400, f"the body is not a link event: {e}") from None
    try:
        data = event["data"]
        if data["schemaVersion"] != "1":
            raise Rejected(400, "data.schemaVersion is not supported (this receiver reads version 1)")
        if data.get("part") is not None:
            raise Rejected(400, "split events are not handled by this peer")
        if data["eventId"] != headers["webhook-id"]:
            raise Rejected(400, "webhook-id is not the delivery id the event names")
        link_id = data["physicalResourceId"]
        if not isinstance(link_id, str) or not 1 <= len(link_id) <= 1024:
            raise Rejected(400, "data.physicalResourceId must be 1 to 1024 characters")
        event_type = event["type"]
        if event_type not in ("account.linked", "account.updated", "account.unlinked"):
            raise Rejected(400, f"the body is not a link event: unknown type {event_type!r}")
        event_at = event_millis(event["timestamp"])
        inventory = data["inventory"]
        vpcs = [v for region in inventory for v in region["vpcs"]]
        unlinked = event_type == "account.unlinked"
        complete = bool(data["inventoryComplete"])
        return {
            "webhook_id": headers["webhook-id"],
            "event_id": data["eventId"],
            "link_id": link_id,
            "event_type": event_type,
            "event_at": event_at,
            "received_at": int(time.time() * 1000),
            "body": body.decode(),
            "account_id": data["accountId"],
            "partition": data["partition"],
            "region": data["region"],
            "stack_id": data["stackId"],
            "logical_resource_id": data["logicalResourceId"],
            "state": "unlinked" if unlinked else "linked",
            "external_id": data.get("externalId"),
            "roles": compact(dict(sorted(data["roles"].items()))),
            "regions": compact(data["regions"]),
            "vpc_id": data.get("vpcId"),
            "vpc_count": len(vpcs),
            "subnet_count": sum(len(v["subnets"]) for v in vpcs),
            "route_table_count": sum(len(v["routeTables"]) for v in vpcs),
            "inventory_complete": 1 if complete else 0,
            "inventory": compact(inventory) if complete else None,
            "linked_at": None if unlinked else event_at,
            "unlinked_at": event_at if unlinked else None,
        }
    except Rejected:
        raise
    except (KeyError, TypeError, AttributeError) as e:
        raise Rejected(400, f"the body is not a link event: missing or mistyped {e}") from None


def outcome(inserted: bool, applied: bool) -> str:
    if not inserted:
        return "duplicate: stored before"
    return "stored" if applied else "stored in the history; the link has a newer event"


def apply(c, sql: list[str], row: dict) -> str:
    """The delivery's statements, inside the caller's transaction (sqlite3 and psycopg connections alike)."""
    insert_event, upsert_link, upsert_inventory = sql
    inserted = c.execute(insert_event, row).rowcount > 0
    applied = False
    if inserted:
        applied = c.execute(upsert_link, row).rowcount > 0
        if row["inventory"] is not None:
            c.execute(upsert_inventory, row)
    return outcome(inserted, applied)


class SqliteStore:
    """One connection per thread; each delivery is one BEGIN IMMEDIATE ... COMMIT (the writer lock is taken
    up front, so concurrent writers wait on busy_timeout instead of failing on a lock upgrade)."""

    def __init__(self, path: str):
        self.path = path
        self.local = threading.local()
        self.sql = [render(s, "sqlite") for s in (INSERT_EVENT, UPSERT_LINK, UPSERT_INVENTORY)]

    def conn(self) -> sqlite3.Connection:
        c = getattr(self.local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=FULL")
            c.execute("PRAGMA busy_timeout=10000")
            self.local.conn = c
        return c

    def store(self, row: dict) -> str:
        c = self.conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            answer = apply(c, self.sql, row)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return answer


class PostgresStore:
    """psycopg 3 with a connection pool; each delivery is one transaction, committed before the answer."""

    def __init__(self, url: str, size: int):
        from psycopg_pool import ConnectionPool

        self.pool = ConnectionPool(url, min_size=size, max_size=size, open=True)
        self.sql = [render(s, "pg") for s in (INSERT_EVENT, UPSERT_LINK, UPSERT_INVENTORY)]

    def store(self, row: dict) -> str:
        with self.pool.connection() as c, c.transaction():
            return apply(c, self.sql, row)


class AsyncPostgresStore:
    def __init__(self, url: str, size: int):
        from psycopg_pool import AsyncConnectionPool

        self.pool = AsyncConnectionPool(url, min_size=size, max_size=size, open=False)
        self.sql = [render(s, "pg") for s in (INSERT_EVENT, UPSERT_LINK, UPSERT_INVENTORY)]

    async def store(self, row: dict) -> str:
        insert_event, upsert_link, upsert_inventory = self.sql
        async with self.pool.connection() as c, c.transaction():
            inserted = (await c.execute(insert_event, row)).rowcount > 0
            applied = False
            if inserted:
                applied = (await c.execute(upsert_link, row)).rowcount > 0
                if row["inventory"] is not None:
                    await c.execute(upsert_inventory, row)
        return outcome(inserted, applied)


def settings() -> tuple[str, Webhook, int]:
    database = os.environ["REGISTRY_DATABASE"]
    webhook = Webhook(os.environ["REGISTRY_SECRET"])
    pool = int(os.environ.get("REGISTRY_POOL", "8"))
    return database, webhook, pool


def sqlite_path(database: str) -> str:
    return database.removeprefix("sqlite://")


def reply(status: int, message: str) -> bytes:
    return compact({"status": status, "message": message}).encode()


def handle(webhook: Webhook, store, headers: dict, body: bytes) -> tuple[int, str]:
    try:
        row = check(webhook, headers, body)
        return 200, store.store(row)
    except Rejected as e:
        return e.status, e.message


# ---- WSGI (gunicorn) ----

_wsgi_state = None
_wsgi_lock = threading.Lock()


def wsgi_state():
    """The worker's verifier and store, made on its first request (after gunicorn forks)."""
    global _wsgi_state
    with _wsgi_lock:
        if _wsgi_state is None:
            database, webhook, pool = settings()
            sqlite = database.startswith("sqlite:")
            store = SqliteStore(sqlite_path(database)) if sqlite else PostgresStore(database, pool)
            _wsgi_state = (webhook, store)
    return _wsgi_state


def wsgi_app(environ, start_response):
    webhook, store = _wsgi_state or wsgi_state()
    if environ["PATH_INFO"] != "/hooks/account-link" or environ["REQUEST_METHOD"] != "POST":
        status, message = 404, "not found"
    else:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_BODY:
            status, message = 413, f"the body is {length} bytes; this receiver accepts at most {MAX_BODY}"
        else:
            body = environ["wsgi.input"].read(length)
            headers = {
                "webhook-id": environ.get("HTTP_WEBHOOK_ID", ""),
                "webhook-timestamp": environ.get("HTTP_WEBHOOK_TIMESTAMP", ""),
                "webhook-signature": environ.get("HTTP_WEBHOOK_SIGNATURE", ""),
            }
            try:
                status, message = handle(webhook, store, headers, body)
            except Exception as e:  # a database failure: nothing was acknowledged, the sender retries
                status, message = 503, f"the delivery could not be stored; retry: {type(e).__name__}"
    out = reply(status, message)
    start_response(
        f"{status} {'OK' if status == 200 else 'Error'}",
        [("content-type", "application/json"), ("content-length", str(len(out)))],
    )
    return [out]


# ---- ASGI (uvicorn) ----


class AsgiApp:
    def __init__(self):
        self.ready = None

    async def setup(self):
        database, webhook, pool = settings()
        if database.startswith("sqlite:"):
            store = SqliteStore(sqlite_path(database))
            executor = concurrent.futures.ThreadPoolExecutor(max_workers=pool)
            loop = asyncio.get_running_loop()

            async def put(row):
                return await loop.run_in_executor(executor, store.store, row)
        else:
            store = AsyncPostgresStore(database, pool)
            await store.pool.open()
            put = store.store
        self.ready = (webhook, put)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self.setup()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        webhook, put = self.ready
        if scope["path"] != "/hooks/account-link" or scope["method"] != "POST":
            status, message = 404, "not found"
        else:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            length = int(headers.get("content-length") or 0)
            if length > MAX_BODY:
                status, message = 413, f"the body is {length} bytes; this receiver accepts at most {MAX_BODY}"
            else:
                chunks = []
                more = True
                while more:
                    m = await receive()
                    chunks.append(m.get("body", b""))
                    more = m.get("more_body", False)
                body = b"".join(chunks)
                wanted = {k: headers.get(k, "") for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
                try:
                    row = check(webhook, wanted, body)
                    status, message = 200, await put(row)
                except Rejected as e:
                    status, message = e.status, e.message
                except Exception as e:
                    status, message = 503, f"the delivery could not be stored; retry: {type(e).__name__}"
        out = reply(status, message)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": out})


asgi_app = AsgiApp()


def migrate(database: str) -> None:
    """Creates the registry's tables (the Rust receiver's migration, applied once before the servers start)."""
    schema = SCHEMA.read_text()
    if database.startswith("sqlite:"):
        c = sqlite3.connect(sqlite_path(database))
        c.execute("PRAGMA journal_mode=WAL")
        c.executescript(schema)
        c.close()
    else:
        import psycopg

        with psycopg.connect(database, autocommit=True) as c:
            c.execute(schema)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "migrate":
        migrate(sys.argv[2])
    else:
        sys.exit("usage: python py_registry.py migrate DATABASE")
