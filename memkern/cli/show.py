"""What each operation's result looks like to people (``--json`` prints the result model instead).

One small view per operation, keyed by the operation's name in the table; an operation
without a view (a new one) is shown as its JSON, so that binding a new operation never needs
this module. User text goes through ``rich.text.Text`` or ``markup=False``, never as markup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from memkern.cli import render
from memkern.models import (
    ActivationReport,
    AdapterReport,
    AddResult,
    AuditEntry,
    ChatAnswer,
    CubeInfo,
    Grant,
    Job,
    MemoryPage,
    SchedulerStatus,
    User,
)

View = Callable[[Any, dict[str, Any], Console], None]
VIEWS: dict[str, View] = {}


def view(*names: str) -> Callable[[View], View]:
    def register(fn: View) -> View:
        for name in names:
            VIEWS[name] = fn
        return fn
    return register


def show(name: str, result: Any, args: dict[str, Any]) -> None:
    """Print ``result`` of operation ``name`` (called with ``args``) for people."""
    found = VIEWS.get(name)
    if found is None:
        typer.echo(render.to_json(result))
    else:
        found(result, args, render.make_console())


def _say(out: Console, text: str) -> None:
    out.print(text, markup=False)


# -- memories ------------------------------------------------------------------------------------------------
@view("add", "add_document")
def _added(result: AddResult, args: dict[str, Any], out: Console) -> None:
    cube = args["cube"]
    dup = f" ({len(result.duplicates)} already stored, skipped)" if result.duplicates else ""
    if len(result.added) == 1 and "messages" not in args:
        _say(out, f"added memory {result.added[0].id} to cube {cube!r}{dup}")
    else:
        _say(out, f"added {len(result.added):,} memories to cube {cube!r}{dup}")
        if 0 < len(result.added) <= 20:
            out.print(render.memories_table(result.added, text_limit=100))
    if result.updated:
        _say(out, f"updated {len(result.updated)} memories it supersedes")
    if result.jobs:
        _say(out, f"queued extraction job(s) {', '.join(result.jobs)}")


@view("search")
def _hits(hits: list[Any], args: dict[str, Any], out: Console) -> None:
    if not hits:
        _say(out, f"no memories in {args['cube']!r} match")
        return
    out.print(render.hits_table(hits, title=f"{len(hits)} hit(s) for {args['query']!r} in {args['cube']!r}"))


@view("get")
def _memory(item: Any, args: dict[str, Any], out: Console) -> None:
    out.print(render.memory_detail(item))


@view("get_all")
def _page(page: MemoryPage, args: dict[str, Any], out: Console) -> None:
    if not page.items:
        _say(out, f"no memories in {args['cube']!r}" + (" at this offset" if page.offset else ""))
        return
    out.print(render.memories_table(page.items))
    if page.next_offset is not None:
        out.print(f"showing {len(page.items)} from offset {page.offset}; more with --offset {page.next_offset}",
                  style="dim", markup=False)


@view("history")
def _versions(items: list[Any], args: dict[str, Any], out: Console) -> None:
    out.print(render.versions_table(items, title=f"history of {args['memory_id']}"))


@view("operations")
def _log(entries: list[Any], args: dict[str, Any], out: Console) -> None:
    if not entries:
        _say(out, "no operations")
    else:
        out.print(render.operations_table(entries))


@view("links")
def _links(links: list[Any], args: dict[str, Any], out: Console) -> None:
    if not links:
        _say(out, f"no links from memory {args['memory_id']}")
    else:
        out.print(render.links_table(links, title=f"links of {args['memory_id']}"))


@view("timeline")
def _timeline(nodes: list[Any], args: dict[str, Any], out: Console) -> None:
    if not nodes:
        _say(out, f"no sessions in {args['cube']!r} in that period")
    else:
        out.print(render.timeline_table(nodes, title=f"timeline of {args['cube']!r} by {args.get('level') or 'month'}"))


@view("profile")
def _profile(values: list[Any], args: dict[str, Any], out: Console) -> None:
    if not values:
        _say(out, f"no slot values known in {args['cube']!r}" + (f" for {args['subject']!r}" if args.get("subject") else ""))
        return
    table = Table(title=f"profile of {args['cube']!r}: what the turns say, oldest value first")
    for column in ("subject", "slot", "value", "since", "until", "turns"):
        table.add_column(column)
    for value in values:
        state = "" if value.current else f" (then {value.superseded_by})"
        table.add_row(Text(value.subject), value.slot, Text(value.value + state, style="" if value.current else "dim"),
                      render.fmt_time(value.since), render.fmt_time(value.until) if value.until else "now",
                      str(len(value.sources)))
    out.print(table)


@view("update")
def _updated(item: Any, args: dict[str, Any], out: Console) -> None:
    _say(out, f"updated memory {item.id} to version {item.version}")


@view("invalidate")
def _invalidated(item: Any, args: dict[str, Any], out: Console) -> None:
    _say(out, f"invalidated memory {item.id} (version {item.version}, true until {render.fmt_time(item.valid_to)})")


@view("delete")
def _deleted_memory(result: Any, args: dict[str, Any], out: Console) -> None:
    _say(out, f"deleted memory {args['memory_id']}")


@view("archive", "restore", "release")
def _moved(item: Any, args: dict[str, Any], out: Console) -> None:
    _say(out, f"memory {item.id} is now {item.state.value}")


@view("migrate")
def _migrated(result: Any, args: dict[str, Any], out: Console) -> None:
    line = f"migrated memory {result.memory.id} to {args['to']}"
    if result.created is not None:
        line += f": new memory {result.created.id}"
    if result.job_id is not None:
        line += f" (job {result.job_id})"
    _say(out, line)


@view("chat")
def _answer(result: ChatAnswer, args: dict[str, Any], out: Console) -> None:
    _say(out, result.answer)
    if result.hits:
        out.print(render.hits_table(result.hits, title=f"{len(result.hits)} memories used"))
    usage = result.usage
    note = f"model {result.model}, {usage.calls} call(s), {usage.prompt_tokens}+{usage.completion_tokens} tokens"
    if result.stored:
        note += f"; stored the exchange in session {result.session_id!r}"
    out.print(note, style="dim", markup=False)


# -- cubes ---------------------------------------------------------------------------------------------------
@view("create_cube")
def _created(info: CubeInfo, args: dict[str, Any], out: Console) -> None:
    _say(out, f"created cube {info.name!r} (owner {info.owner!r}, id {info.id}, embedder {info.embedder})")


@view("get_cube")
def _cube(info: CubeInfo, args: dict[str, Any], out: Console) -> None:
    out.print(render.cubes_table([info]))


@view("list_cubes")
def _cubes(cubes: list[CubeInfo], args: dict[str, Any], out: Console) -> None:
    if not cubes:
        owner = args.get("owner")
        _say(out, "no cubes" + (f" owned by {owner!r}" if owner else "") + "; create one with "
             "`memkern cube create NAME`")
    else:
        out.print(render.cubes_table(cubes))


@view("delete_cube")
def _deleted_cube(result: Any, args: dict[str, Any], out: Console) -> None:
    _say(out, f"deleted cube {args['cube']!r} ({result.cube_id})")


@view("dump")
def _dumped(result: Any, args: dict[str, Any], out: Console) -> None:
    _say(out, f"wrote cube {result.cube.name!r} to {result.path} ({result.bytes:,} bytes)")


@view("load_cube")
def _loaded(info: CubeInfo, args: dict[str, Any], out: Console) -> None:
    _say(out, f"loaded cube {info.name!r} (owner {info.owner!r}, id {info.id}) from {args['path']}")


@view("compose_cubes")
def _composed(report: Any, args: dict[str, Any], out: Console) -> None:
    _say(out, f"composed cube {report.cube.name!r} ({report.cube.id}) from {args['a']!r} and {args['b']!r}: "
              f"{report.versions} versions, {len(report.merged)} merged")


@view("fuse_duplicates")
def _fused(report: Any, args: dict[str, Any], out: Console) -> None:
    fused = sum(len(group.fused) for group in report.groups)
    _say(out, f"examined {report.examined} memories: fused {fused} duplicates in {len(report.groups)} group(s)")


# -- activation and parametric memory -------------------------------------------------------------------------
@view("activation_build", "activation_status")
def _activation(found: ActivationReport, args: dict[str, Any], out: Console) -> None:
    if found.state == "missing":
        _say(out, "no activation")
        return
    built = render.fmt_time(found.built_at, seconds=True)
    _say(out, f"{found.state}: {found.memories} memories, {found.n_tokens} tokens, "
              f"{(found.kv_bytes or 0) / 1e6:.1f} MB KV state, model {found.model}, built {built}")
    for reason in found.reasons:
        _say(out, f"  stale: {reason}")


@view("activation_drop")
def _activation_dropped(removed: bool, args: dict[str, Any], out: Console) -> None:
    _say(out, "removed the activation" if removed else "no activation")


@view("parametric_distil", "parametric_status")
def _adapter(report: AdapterReport, args: dict[str, Any], out: Console) -> None:
    if report.adapter is None:
        _say(out, "no adapter")
        return
    state = f"stale: {len(report.changed)} changed" if report.stale else "current"
    _say(out, f"adapter {report.adapter} (rank {report.rank}, {report.sources} memories, {state}) at {report.path}")
    losses = report.metrics.get("epoch_loss")
    if losses:
        _say(out, f"  {report.metrics.get('examples')} QA pairs, {report.metrics.get('train_seconds')} s training, "
                  f"loss {losses[0]} -> {losses[-1]}")


@view("parametric_ask")
def _closed_book(result: Any, args: dict[str, Any], out: Console) -> None:
    _say(out, result.answer)


@view("parametric_forget")
def _adapter_forgotten(removed: bool, args: dict[str, Any], out: Console) -> None:
    _say(out, "removed the adapter" if removed else "no adapter")


# -- grants, policy, users, keys -----------------------------------------------------------------------------
@view("grant")
def _granted(grant: Grant, args: dict[str, Any], out: Console) -> None:
    _say(out, f"granted {grant.permission.value} on cube {args['cube']!r} to user {grant.user_id!r}")


@view("revoke")
def _revoked(removed: bool, args: dict[str, Any], out: Console) -> None:
    _say(out, f"revoked the grant of user {args['user_id']!r}" if removed else "no such grant")


@view("grants")
def _grants(grants: list[Grant], args: dict[str, Any], out: Console) -> None:
    if not grants:
        _say(out, "no grants")
    for grant in grants:
        typer.echo(f"{grant.user_id}\t{grant.permission.value}\t{grant.granted_at.isoformat(timespec='seconds')}")


@view("policy", "set_policy")
def _policy(policy: Any, args: dict[str, Any], out: Console) -> None:
    for key, value in policy.model_dump().items():
        typer.echo(f"{key}={'-' if value is None else value}")


@view("create_user", "get_user", "whoami")
def _user(user: User | None, args: dict[str, Any], out: Console) -> None:
    if user is None:
        _say(out, "no user: the embedded single-user default (full access)")
    else:
        typer.echo(f"{user.id}\t{user.role.value}\t{user.name}")


@view("list_users")
def _users(users: list[User], args: dict[str, Any], out: Console) -> None:
    for user in users:
        _user(user, args, out)


@view("forget_user")
def _user_forgotten(cubes: list[str], args: dict[str, Any], out: Console) -> None:
    _say(out, f"forgot user {args['user_id']!r} and {len(cubes)} cube(s)")


@view("create_api_key")
def _new_key(key: str, args: dict[str, Any], out: Console) -> None:
    typer.echo(key)
    typer.echo("store it now: it is not shown again", err=True)


@view("api_keys")
def _keys(keys: list[Any], args: dict[str, Any], out: Console) -> None:
    for key in keys:
        revoked = f"revoked {key.revoked_at.isoformat(timespec='seconds')}" if key.revoked_at else "active"
        typer.echo(f"mk_{key.prefix}\t{key.user_id}\t{key.created_at.isoformat(timespec='seconds')}\t{revoked}")


@view("revoke_api_key")
def _key_revoked(key: Any, args: dict[str, Any], out: Console) -> None:
    _say(out, f"revoked key mk_{key.prefix}")


# -- audit, retention, the queue -----------------------------------------------------------------------------
@view("audit")
def _audit(entries: list[AuditEntry], args: dict[str, Any], out: Console) -> None:
    if not entries:
        _say(out, "no audit entries")
    for e in entries:
        ids = ",".join(e.item_ids[:5]) + (f",+{len(e.item_ids) - 5}" if len(e.item_ids) > 5 else "")
        typer.echo(f"{e.seq}\t{e.at.isoformat(timespec='seconds')}\t{e.user_id or '-'}\t{e.operation}\t"
                   f"{e.cube_id or '-'}\t{e.result.value}\t{ids or '-'}\t{e.detail or ''}")


@view("apply_retention")
def _retention(report: Any, args: dict[str, Any], out: Console) -> None:
    archived = sum(len(ids) for ids in report.archived.values())
    forgotten = sum(len(ids) for ids in report.forgotten.values())
    _say(out, f"retention as of {render.fmt_time(report.now, seconds=True)} UTC over {report.cubes} cube(s): "
              f"{archived} archived, {forgotten} forgotten")


@view("enqueue_job")
def _queued(job: Job, args: dict[str, Any], out: Console) -> None:
    typer.echo(f"queued {job.type} job {job.id}")


@view("retry_job")
def _requeued(job: Job, args: dict[str, Any], out: Console) -> None:
    typer.echo(f"requeued {job.type} job {job.id}")


@view("scheduler_status")
def _queue(status: SchedulerStatus, args: dict[str, Any], out: Console) -> None:
    typer.echo(" ".join(f"{k}={v}" for k, v in status.counts.items()))
    for job_type, counts in sorted(status.by_type.items()):
        typer.echo(f"  {job_type}: " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    if status.oldest_pending_at:
        typer.echo(f"oldest pending since {status.oldest_pending_at.isoformat(timespec='seconds')}")
    for job in status.running:
        typer.echo(f"running\t{job.id}\t{job.type}\t{job.cube_id or '-'}\t{job.lease_owner}\t"
                   f"attempt {job.attempts}/{job.max_attempts}")
    for job in status.dead:
        typer.echo(f"dead\t{job.id}\t{job.type}\t{job.cube_id or '-'}\t{job.last_error or ''}")
    typer.echo("hooks: " + "; ".join(f"{k}={','.join(v) or '-'}" for k, v in status.hooks.items()))
