"""`gateway keys create|list|revoke|update|rotate|show|secrets`: manage API keys (never print
a secret except the new one from create and rotate, and a new MAC secret on request).

create and rotate mint keys of the MAC format (gateway.keys.mac) under the newest of the
gateway's MAC secrets, read as the gateway reads them: KEY_MAC_SECRETS_PARAMETER (the SSM
parameter) or KEY_MAC_SECRETS."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any

from gateway.cli import argtypes
from gateway.cli.common import CliError, Context, check_models, print_json, print_table
from gateway.errors import ConfigurationError
from gateway.keys import ApiKey, KeyStatus
from gateway.keys.mac import KeyMac, new_mac_secret
from gateway.limits import LimitStore
from gateway.usage.query import UsageQuery, month_usage, utc_today

KEY_COLUMNS = ("key_id", "name", "owner", "status", "created_at", "expires_at", "priority")
LIMITS = ("rpm", "tpm", "monthly_tokens")
PRIORITY_HELP = (
    "vLLM's request priority (lower runs first), sent to models with priority_scheduling"
)


def add_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    _add_create(keys)
    listing = keys.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--owner")
    listing.add_argument("--json", action="store_true", help="a JSON array, not a table")
    listing.set_defaults(handler=_list)
    revoke = keys.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=_revoke)
    _add_update(keys)
    rotate = keys.add_parser(
        "rotate",
        help="a new secret for a key (MAC format, newest MAC secret); the old one stops "
        "working within the gateway's KEY_CACHE_TTL_SECONDS",
    )
    rotate.add_argument("key_id")
    rotate.set_defaults(handler=_rotate)
    show = keys.add_parser("show", help="a key's settings and its usage this UTC month")
    show.add_argument("key_id")
    show.set_defaults(handler=_show)
    _add_secrets(keys)
    for name in ("create", "revoke", "update", "rotate", "show"):
        keys.choices[name].add_argument(
            "--json", action="store_true", default=False, help="JSON output (the default)"
        )


def _add_create(keys: Any) -> None:
    create = keys.add_parser("create", help="create a key; prints its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--owner", default="default")
    create.add_argument(
        "--models", type=argtypes.models, default=(), help="comma-separated allow-list"
    )
    create.add_argument("--expires-in-days", type=argtypes.positive)
    create.add_argument("--priority", type=int, help=PRIORITY_HELP)
    argtypes.add_limits(create)
    argtypes.add_model_check(create)
    create.set_defaults(handler=_create)


ROTATION_STEPS = (
    "1. make a new MAC secret: gateway keys secrets --generate",
    "2. add it AFTER the current one in the SSM parameter (it verifies, does not mint yet), "
    "and deploy with a new KeyMacSecretsRevision, so every gateway instance loads it",
    "3. put it FIRST: the CLI mints with it from now on (no deployment needed); keys of "
    "the previous secret keep working",
    "4. gateway keys secrets: the keys still tagged by the previous secret; rotate each "
    "(gateway keys rotate KEY_ID) and hand out the new secrets",
    "5. retire the previous secret: remove it from the parameter and deploy with a new "
    "KeyMacSecretsRevision (its keys stop working as the new versions take over)",
)


def _add_secrets(keys: Any) -> None:
    secrets = keys.add_parser(
        "secrets",
        help="the MAC secrets' public ids, the keys tagged by each, and how to rotate",
        description="Shows the gateway's MAC secrets by their public ids (never their "
        "values), newest first, with how many keys each one tagged and how many keys "
        "still have a legacy secret (which costs a DynamoDB read per unknown key). "
        "Rotating the MAC secret: " + " ".join(ROTATION_STEPS),
    )
    secrets.add_argument(
        "--generate",
        action="store_true",
        help="print a new random MAC secret (256 bits) for step 1 and do nothing else",
    )
    secrets.set_defaults(handler=_secrets)


def _add_update(keys: Any) -> None:
    # Options left out are left alone (SUPPRESS: absent from the namespace).
    update = keys.add_parser(
        "update",
        help="change a key's name, models, expiry or limits",
        argument_default=argparse.SUPPRESS,
    )
    update.add_argument("key_id")
    update.add_argument("--name")
    models = update.add_mutually_exclusive_group()
    models.add_argument("--models", type=argtypes.models, help="comma-separated allow-list")
    models.add_argument("--all-models", action="store_true", help="allow every model")
    expiry = update.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in-days", type=argtypes.positive, help="expire N days from now")
    expiry.add_argument("--no-expiry", action="store_true", help="never expire")
    update.add_argument("--priority", type=int, help=PRIORITY_HELP)
    argtypes.add_limits(update)
    argtypes.add_model_check(update)
    update.set_defaults(handler=_update)


def _check_models(args: argparse.Namespace, ctx: Context) -> None:
    """Refuse unknown model ids (unless --allow-unknown-models), before anything is written."""
    models = getattr(args, "models", None)
    if models and not getattr(args, "allow_unknown_models", False):
        check_models(
            models, ctx.settings, read_ssm_parameter=ctx.aws.read_ssm_parameter, err=ctx.err
        )


def key_mac(ctx: Context) -> KeyMac:
    """The gateway's MAC secrets, read as the gateway reads them, or a CliError saying what
    to set."""
    try:
        mac = KeyMac.from_settings(ctx.settings, read_ssm_parameter=ctx.aws.read_ssm_parameter)
    except ConfigurationError as exc:
        raise CliError(str(exc)) from None
    if mac is None:
        raise CliError(
            "no MAC secret to mint keys with: set KEY_MAC_SECRETS_PARAMETER to the gateway's "
            "SSM parameter (the stack's KeyMacSecretsParameter; docs/SECURITY.md), or "
            "KEY_MAC_SECRETS for a local gateway"
        )
    return mac


def _create(args: argparse.Namespace, ctx: Context) -> int:
    _check_models(args, ctx)
    mac = key_mac(ctx)
    expires = (
        datetime.now(UTC) + timedelta(days=args.expires_in_days) if args.expires_in_days else None
    )
    key, secret = ctx.key_store().create(
        name=args.name,
        owner=args.owner,
        models=args.models,
        expires_at=expires,
        rpm=args.rpm,
        tpm=args.tpm,
        monthly_tokens=args.monthly_tokens,
        priority=args.priority,
        secret=mac.mint(),
        mac_secret_id=mac.newest_id,
    )
    print_json({"key": secret, **key.public_dict()}, ctx.out)
    return 0


def _list(args: argparse.Namespace, ctx: Context) -> int:
    rows = [k.public_dict() for k in ctx.key_store().list(owner=args.owner)]
    if args.json:
        print_json(rows, ctx.out)
    else:
        print_table(rows, KEY_COLUMNS, ctx.out)
    return 0


def _revoke(args: argparse.Namespace, ctx: Context) -> int:
    keys = ctx.key_store()
    if keys.get(key_id=args.key_id).status is KeyStatus.REVOKED:
        raise CliError(f"key {args.key_id} is already revoked; nothing changed")
    print_json(keys.revoke(key_id=args.key_id).public_dict(), ctx.out)
    return 0


def _update(args: argparse.Namespace, ctx: Context) -> int:
    _check_models(args, ctx)
    keys = ctx.key_store()
    key = keys.get(key_id=args.key_id)
    updated = dataclasses.replace(key, **_changes(args))
    keys.save(key=updated)
    print_json(updated.public_dict(), ctx.out)
    return 0


def _rotate(args: argparse.Namespace, ctx: Context) -> int:
    mac = key_mac(ctx)
    key, secret = ctx.key_store().rotate(
        key_id=args.key_id, secret=mac.mint(), mac_secret_id=mac.newest_id
    )
    print_json({"key": secret, **key.public_dict()}, ctx.out)
    return 0


def _secrets(args: argparse.Namespace, ctx: Context) -> int:
    if args.generate:
        ctx.out.write(new_mac_secret() + "\n")
        return 0
    mac = key_mac(ctx)
    tagged: dict[str | None, int] = {}
    for key in ctx.key_store().list():
        if key.status is not KeyStatus.ACTIVE:
            continue
        tagged[key.mac_secret_id] = tagged.get(key.mac_secret_id, 0) + 1
    active = [
        {"id": key_id, "mints": n == 0, "keys": tagged.pop(key_id, 0)}
        for n, key_id in enumerate(mac.ids)
    ]
    legacy = tagged.pop(None, 0)
    print_json(
        {
            "secrets": active,
            # Keys tagged by a secret no longer in the list: they can no longer authenticate.
            "retired": [{"id": k, "keys": n} for k, n in sorted(tagged.items(), key=str)],
            "legacy_keys": legacy,
            "rotation": list(ROTATION_STEPS),
        },
        ctx.out,
    )
    return 0


def _show(args: argparse.Namespace, ctx: Context) -> int:
    key = ctx.key_store().get(key_id=args.key_id)
    query = ctx.usage_query()
    limits = LimitStore(client=ctx.aws.dynamodb, table=ctx.settings.usage_table)
    print_json(show_key(key, query, limits), ctx.out)
    return 0


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    given = vars(args)
    changes: dict[str, Any] = {}
    if "name" in given:
        changes["name"] = args.name
    if "models" in given:
        if not args.models:
            raise CliError("--models needs at least one model (or use --all-models)")
        changes["models"] = tuple(sorted(set(args.models)))
    if "all_models" in given:
        changes["models"] = ()
    if "expires_in_days" in given:
        changes["expires_at"] = datetime.now(UTC) + timedelta(days=args.expires_in_days)
    if "no_expiry" in given:
        changes["expires_at"] = None
    for name in (*LIMITS, "priority"):
        if name in given:
            changes[name] = given[name]
    if not changes:
        raise CliError(
            "nothing to update: give --name, --models/--all-models, "
            "--expires-in-days/--no-expiry, --rpm, --tpm, --monthly-tokens or --priority"
        )
    return changes


def show_key(
    key: ApiKey, query: UsageQuery, limits: LimitStore, *, today: date | None = None
) -> dict[str, Any]:
    """A key's public settings and its usage this UTC month: the sum of its daily rollups,
    and `used_tokens`/`remaining_tokens` as its monthly budget counts them."""
    today = today or utc_today()
    totals = query.key_month(key_id=key.key_id, day=today)
    month = month_usage(key, limits, today=today)
    return {
        **key.public_dict(),
        "usage_this_month": {"month": month.pop("month"), **totals.to_dict(), **month},
    }
