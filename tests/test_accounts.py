"""Accounts for the service: users with roles and Argon2id passwords, API tokens kept as
hashes, and the commands an operator manages them with."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from policy_engine import accounts
from policy_engine.cli import app
from policy_engine.errors import ConfigError
from policy_engine.store import Store
from policy_engine.store.accounts import Accounts
from policy_engine.store.schema import ApiToken, User

runner = CliRunner()
PASSWORD = "correct horse battery staple"


# -- rules (pure) -------------------------------------------------------------------------------
def test_roles_say_what_each_may_do() -> None:
    assert accounts.may("viewer", accounts.READ)
    assert not accounts.may("viewer", accounts.OVERRULE)
    assert accounts.may("reviewer", accounts.OVERRULE)
    assert not accounts.may("reviewer", accounts.EDIT_RULES)
    assert accounts.may("editor", accounts.EDIT_RULES)
    assert not accounts.may("editor", accounts.OVERRULE)
    assert all(accounts.may("admin", p) for p in accounts.PERMISSIONS["admin"])
    assert not accounts.may("nobody", accounts.READ)
    with pytest.raises(ConfigError, match="did you mean 'reviewer'"):
        accounts.check_role("revewer")


@pytest.mark.parametrize(
    "name", ["Alice", "a b", "new\nline", "ädmin", "-flag", "", "x" * 65, "<script>"]
)
def test_names_that_could_disguise_themselves_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="not allowed"):
        accounts.check_name(name)


def test_a_token_is_checked_against_its_hash_only() -> None:
    token = accounts.new_token()
    assert token.secret.startswith("pe_") and token.lookup in token.secret
    assert accounts.token_lookup(token.secret) == token.lookup
    assert accounts.token_matches(token.secret, token.sha256)
    assert not accounts.token_matches(token.secret + "x", token.sha256)
    assert accounts.token_lookup("Bearer nonsense") is None


# -- the store ----------------------------------------------------------------------------------
def test_a_user_logs_in_with_the_right_password_only(store: Store) -> None:
    users = Accounts(store)
    users.add_user("alice", "reviewer", PASSWORD, by="root via cli")
    account = users.authenticate("alice", PASSWORD)
    assert account is not None and (account.name, account.role) == ("alice", "reviewer")
    assert account.may(accounts.OVERRULE) and not account.may(accounts.MANAGE_ACCOUNTS)
    assert users.authenticate("alice", PASSWORD + "!") is None
    assert users.authenticate("mallory", PASSWORD) is None
    assert users.authenticate("alice", "x" * 100_000) is None  # no hashing a megabyte
    users.disable("alice")
    assert users.authenticate("alice", PASSWORD) is None
    users.enable("alice")
    assert users.authenticate("alice", PASSWORD) is not None
    (row,) = users.users()
    assert row.last_login_at is not None and row.created_by == "root via cli"
    with pytest.raises(ConfigError, match="exists already"):
        users.add_user("alice", "viewer", PASSWORD, by="root via cli")
    with pytest.raises(ConfigError, match="no user 'bob'"):
        users.disable("bob")


def test_only_an_argon2id_hash_of_the_password_is_stored(store: Store, db_url: str) -> None:
    Accounts(store).add_user("alice", "viewer", PASSWORD, by="t")
    with store._transaction() as s:
        (stored,) = s.scalars(select(User.password_hash))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    if db_url.startswith("sqlite"):
        database = Path(db_url.removeprefix("sqlite:///"))
        store.close()
        raw = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
        assert PASSWORD.encode() not in raw


def test_a_hash_made_with_weaker_parameters_is_renewed_at_login(store: Store) -> None:
    from argon2 import PasswordHasher

    users = Accounts(store)
    users.add_user("alice", "viewer", PASSWORD, by="t")
    weak = PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
    with store._transaction() as s:
        s.scalar(select(User)).password_hash = weak
    assert users.authenticate("alice", PASSWORD) is not None
    with store._transaction() as s:
        renewed = s.scalar(select(User.password_hash))
    assert renewed != weak and not accounts.needs_rehash(renewed)


def test_a_token_works_until_revoked_and_only_its_hash_is_kept(store: Store) -> None:
    tokens = Accounts(store)
    secret = tokens.create_token("playout-scheduler", "viewer", by="root via cli")
    client = tokens.verify_token(secret)
    assert client is not None and (client.kind, client.name, client.role) == (
        "token", "playout-scheduler", "viewer",
    )  # fmt: skip
    with store._transaction() as s:
        row = s.scalar(select(ApiToken))
        assert secret not in (row.secret_sha256, row.lookup) and row.last_used_at is not None
    assert tokens.verify_token(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    tokens.revoke_token("playout-scheduler")
    assert tokens.verify_token(secret) is None
    assert tokens.tokens()[0].revoked_at is not None
    with pytest.raises(ConfigError, match="no live token"):
        tokens.revoke_token("playout-scheduler")


def test_a_token_used_again_within_the_minute_is_only_read(store: Store) -> None:
    """Under load every request checks its token: a write per request would serialise
    them all on SQLite's one writer, so the time of last use is kept to the minute."""
    from datetime import timedelta

    from sqlalchemy import event

    tokens = Accounts(store)
    secret = tokens.create_token("asset-manager", "viewer", by="root via cli")
    writes: list[str] = []
    event.listen(
        store.engine, "before_cursor_execute",
        lambda conn, cursor, sql, *_: writes.append(sql) if sql.startswith("UPDATE") else None,
    )  # fmt: skip
    assert tokens.verify_token(secret) is not None  # first use: recorded
    assert len(writes) == 1
    for _ in range(5):
        assert tokens.verify_token(secret) is not None
    assert len(writes) == 1, writes
    with store._transaction() as s:
        row = s.scalar(select(ApiToken))
        row.last_used_at -= timedelta(minutes=2)
        earlier = row.last_used_at
    writes.clear()
    assert tokens.verify_token(secret) is not None  # a minute on: recorded again
    with store._transaction() as s:
        assert s.scalar(select(ApiToken.last_used_at)) > earlier
    assert len(writes) == 1


# -- the commands -------------------------------------------------------------------------------
def test_users_and_tokens_from_the_command_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    added = runner.invoke(app, ["--db", db, "users", "add", "alice", "--role", "reviewer"])
    assert added.exit_code == 0, added.output
    shown = added.stdout.split("(shown once): ")[1].strip()  # generated: no terminal here
    store = Store.open(db)
    assert Accounts(store).authenticate("alice", shown) is not None
    piped = runner.invoke(
        app, ["--db", db, "users", "add", "bob", "--role", "viewer", "--password-stdin"],
        input=PASSWORD + "\n",
    )  # fmt: skip
    assert piped.exit_code == 0 and "shown once" not in piped.stdout
    assert Accounts(store).authenticate("bob", PASSWORD) is not None
    listed = runner.invoke(app, ["--db", db, "users", "list", "--json"])
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["alice"]["role"] == "reviewer"
    assert rows["alice"]["created_by"] == f"{getpass.getuser()} via cli"
    assert runner.invoke(app, ["--db", db, "users", "disable", "bob"]).exit_code == 0
    assert Accounts(store).authenticate("bob", PASSWORD) is None
    made = runner.invoke(app, ["--db", db, "tokens", "create", "mam", "--role", "viewer"])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert Accounts(store).verify_token(secret) is not None
    assert secret not in runner.invoke(app, ["--db", db, "tokens", "list"]).stdout
    assert runner.invoke(app, ["--db", db, "tokens", "revoke", "mam"]).exit_code == 0
    assert Accounts(store).verify_token(secret) is None
    store.close()


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (["users", "add", "bob", "--role", "revewer"], "", "did you mean 'reviewer'"),
        (["users", "add", "Bob Smith", "--role", "viewer"], "", "not allowed"),
        (["users", "add", "bob", "--role", "viewer", "--password-stdin"], "short\n", "too short"),
        (["users", "passwd", "nobody", "--generate"], "", "no user 'nobody'"),
        (["tokens", "revoke", "nothing"], "", "no live token"),
    ],
)
def test_account_mistakes_are_usage_errors(
    tmp_path: Path, args: list[str], stdin: str, says: str
) -> None:
    result = runner.invoke(app, ["--db", f"sqlite:///{tmp_path / 'e.sqlite'}", *args], input=stdin)
    assert result.exit_code == 2, result.output
    assert says in result.output
