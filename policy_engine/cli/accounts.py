"""``policy-engine users …`` and ``tokens …``: accounts for the service, managed by an
operator on the server (whoever can run this command can open the database: an admin)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from policy_engine.accounts import (
    ROLES,
    check_name,
    check_password,
    check_role,
    generate_password,
    local_operator,
)
from policy_engine.cli.common import ConfigOpt, JsonOpt, app, err, fail, open_store, out
from policy_engine.cli.common import settings_for as _settings_for
from policy_engine.errors import ConfigError, PolicyEngineError
from policy_engine.escaping import visible_controls

users_app = typer.Typer(help="People who log in to the service, and their roles.")
tokens_app = typer.Typer(help="API tokens for client systems (scheduling, asset management).")
app.add_typer(users_app, name="users", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens", no_args_is_help=True)

RoleOpt = Annotated[
    str, typer.Option("--role", help=f"One of {', '.join(ROLES)}.", show_default=False)
]
PasswordStdinOpt = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from standard input (for scripts)."),
]
GenerateOpt = Annotated[
    bool, typer.Option("--generate", help="Generate a password and show it once.")
]


def operator() -> str:
    """Who is acting on the server's own command line, as the audit trail records it."""
    return f"{local_operator()} via cli"


@contextmanager
def _accounts(ctx: typer.Context, config: Any) -> Iterator[Any]:
    from policy_engine.store.accounts import Accounts

    store = open_store(_settings_for(ctx, {}, config))
    try:
        yield Accounts(store)
    finally:
        store.close()


def _new_password(from_stdin: bool, generate: bool) -> tuple[str, bool]:
    """The password to set, and whether it was generated (then it is shown once)."""
    if from_stdin and generate:
        raise ConfigError("give --password-stdin or --generate, not both")
    if from_stdin:
        return check_password(sys.stdin.readline().rstrip("\r\n")), False
    if generate or not sys.stdin.isatty():
        return generate_password(), True
    password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    return check_password(password), False


def _show_generated(name: str, password: str) -> None:
    out.print(f"password for {name} (shown once): {password}", highlight=False, markup=False)


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else "-"


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Lower-case letters, digits and . _ @ -.")],
    role: RoleOpt,
    password_stdin: PasswordStdinOpt = False,
    generate: GenerateOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Add a user. The password is asked for (twice) on a terminal, read with
    --password-stdin, or generated and shown once; only its Argon2id hash is stored."""
    try:
        check_name(name), check_role(role)  # before asking for a password
        password, generated = _new_password(password_stdin, generate)
        with _accounts(ctx, config) as accounts:
            accounts.add_user(name, role, password, by=operator())
    except PolicyEngineError as exc:
        raise fail(exc) from None
    out.print(f"user {name} added ({role})", highlight=False, markup=False)
    if generated:
        _show_generated(name, password)


@users_app.command("list")
def users_list(ctx: typer.Context, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every user: role, whether enabled, when made and by whom, last login."""
    _list(ctx, config, as_json, lambda a: a.users(), ("user", "last login"),
          lambda r: ("disabled", r.disabled_at, "enabled", r.last_login_at))  # fmt: skip


@users_app.command("disable")
def users_disable(ctx: typer.Context, name: str, config: ConfigOpt = None) -> None:
    """The user can no longer log in; their records stay (the audit trail names them)."""
    _change(ctx, config, lambda a: a.disable(name), f"user {name} disabled")


@users_app.command("enable")
def users_enable(ctx: typer.Context, name: str, config: ConfigOpt = None) -> None:
    """A disabled user may log in again."""
    _change(ctx, config, lambda a: a.enable(name), f"user {name} enabled")


@users_app.command("role")
def users_role(ctx: typer.Context, name: str, role: RoleOpt, config: ConfigOpt = None) -> None:
    """Give a user another role."""
    _change(ctx, config, lambda a: a.set_role(name, role), f"user {name} is now {role}")


@users_app.command("passwd")
def users_passwd(
    ctx: typer.Context,
    name: str,
    password_stdin: PasswordStdinOpt = False,
    generate: GenerateOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Set a user's password (asked for, read from standard input, or generated)."""
    try:
        password, generated = _new_password(password_stdin, generate)
    except PolicyEngineError as exc:
        raise fail(exc) from None
    _change(ctx, config, lambda a: a.set_password(name, password), f"password of {name} set")
    if generated:
        _show_generated(name, password)


def _change(ctx: typer.Context, config: Any, action: Any, done: str) -> None:
    try:
        with _accounts(ctx, config) as accounts:
            action(accounts)
    except PolicyEngineError as exc:
        raise fail(exc) from None
    out.print(done, highlight=False, markup=False)


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The client system, e.g. playout-scheduler.")],
    role: RoleOpt,
    config: ConfigOpt = None,
) -> None:
    """A token for a client system, shown once (only its hash is kept): send it as
    ``Authorization: Bearer TOKEN``."""
    try:
        with _accounts(ctx, config) as accounts:
            secret = accounts.create_token(name, role, by=operator())
    except PolicyEngineError as exc:
        raise fail(exc) from None
    err.print(f"token {name} created ({role}); it is shown once:", highlight=False, markup=False)
    out.print(secret, highlight=False, markup=False, soft_wrap=True)


@tokens_app.command("list")
def tokens_list(ctx: typer.Context, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every token (never its secret): role, state, when made and by whom, last use."""
    _list(ctx, config, as_json, lambda a: a.tokens(), ("token", "last used"),
          lambda r: ("revoked", r.revoked_at, "live", r.last_used_at))  # fmt: skip


def _list(
    ctx: typer.Context,
    config: Any,
    as_json: bool,
    fetch: Callable[[Any], list[Any]],
    names: tuple[str, str],
    state_of: Callable[[Any], tuple[str, datetime | None, str, datetime | None]],
) -> None:
    """Users or tokens as a table (or JSON): name, role, state, made when and by whom,
    last used; ``state_of(row)`` gives (ended as, ended at, live as, last used)."""
    try:
        with _accounts(ctx, config) as accounts:
            rows = fetch(accounts)
    except PolicyEngineError as exc:
        raise fail(exc) from None
    if as_json:
        sys.stdout.write(json.dumps([vars(r) for r in rows], indent=2, default=str) + "\n")
        return
    table = Table(show_edge=False, header_style="bold")
    for column in (names[0], "role", "state", "created", "by", names[1]):
        table.add_column(column)
    for r in rows:
        ended_as, ended_at, live_as, last = state_of(r)
        state = f"{ended_as} {_when(ended_at)}" if ended_at else live_as
        table.add_row(
            r.name, r.role, state, _when(r.created_at), visible_controls(r.created_by),
            _when(last),
        )  # fmt: skip
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(ctx: typer.Context, name: str, config: ConfigOpt = None) -> None:
    """The token stops working at once; its record stays."""
    _change(ctx, config, lambda a: a.revoke_token(name), f"token {name} revoked")
