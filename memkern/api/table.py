"""The operation table: every public operation of memkern, declared once.

Each entry names the operation, its implementation, its input and output, what a caller
needs to run it, and how the surfaces show it (REST route, CLI command, MCP tool). The
dispatcher runs them (``memkern.api.dispatch``); ``MemOS``/``MemCube``, the HTTP client,
the REST server, the MCP server and the CLI are all bound from this table, and a test
walks it to check that no surface lacks an operation or a parameter.

Permissions in short: reading a cube needs ``read`` on it, changing its memories
``write``, administering it (grants, policy, deleting it, seeing quarantined memories)
``admin``; the owner and store admins hold ``admin``. Store-wide operations (users,
retention, the whole queue) need the admin role.
"""

from __future__ import annotations

from typing import Any

from memkern.api import inputs as i
from memkern.api.spec import (
    FILE_ERRORS,
    LLM_ERRORS,
    WRITE_ERRORS,
    Cli,
    Http,
    KeyOwnerOrAdmin,
    Need,
    OnCube,
    OnMemory,
    Operation,
    OwnerIsCaller,
    SelfOrAdmin,
    StoreAdmin,
)
from memkern.models import (
    ActivationReport,
    AdapterReport,
    AddResult,
    ApiKeyInfo,
    AuditEntry,
    ChatAnswer,
    ComposeReport,
    CubeFile,
    CubeInfo,
    CubePolicy,
    CubeStats,
    Deleted,
    FuseReport,
    Grant,
    Hit,
    Job,
    LifecycleState,
    MemoryItem,
    MemoryLink,
    MemoryPage,
    MigrateResult,
    ParametricAnswer,
    Permission,
    ProfileValue,
    RetentionReport,
    SchedulerStatus,
    TimelineNode,
    User,
)
from memkern.models import (
    Operation as LogEntry,
)
from memkern.ops import (
    chat,
    compose,
    cubes,
    derived,
    governance,
    jobs,
    lifecycle,
    links,
    memories,
    portable,
    profile,
    search,
    timeline,
    versions,
)

READ, WRITE, ADMIN = Permission.READ, Permission.WRITE, Permission.ADMIN
CUBE = "/cubes/{cube}"
MEMORY = "/cubes/{cube}/memories/{memory_id}"


def _cube(permission: Permission) -> Any:
    return lambda a: [OnCube(a.cube, permission)]


def _memory(permission: Permission) -> Any:
    return lambda a: [OnMemory(a.cube, a.memory_id, permission)]


def _reading(a: Any) -> list[Need]:
    """Reading with filters: asking for quarantined memories needs admin on the cube."""
    wants = a.filters is not None and a.filters.state is LifecycleState.QUARANTINED
    return [OnCube(a.cube, ADMIN if wants else READ)]


def _cube_op(name: str, run: Any, input: type, output: Any, needs: Any, http: Http, cli: Cli, *,
             mcp: Any = "write", positional: tuple[str, ...] = (), **kw: Any) -> Operation:
    return Operation(name=name, run=run, input=input, output=output, needs=needs, handle="cube", http=http,
                     cli=cli, mcp=mcp, cube_field="cube", positional=positional, **kw)


def _store_op(name: str, run: Any, input: type, output: Any, needs: Any, http: Http, cli: Cli, *,
              mcp: Any = "write", positional: tuple[str, ...] = (), **kw: Any) -> Operation:
    return Operation(name=name, run=run, input=input, output=output, needs=needs, handle="store", http=http,
                     cli=cli, mcp=mcp, positional=positional, **kw)


_OPERATIONS: list[Operation] = [
    # -- memories ------------------------------------------------------------------------------------
    _cube_op("add", memories.add, i.AddInput, AddResult, _cube(WRITE),
             Http("POST", f"{CUBE}/memories", 201), Cli(("add",), ("cube",)), positional=("messages",),
             errors=WRITE_ERRORS + LLM_ERRORS),
    _cube_op("add_document", memories.add_document, i.AddDocumentInput, AddResult, _cube(WRITE),
             Http("POST", f"{CUBE}/documents", 201), Cli(("add-document",), ("cube", "text")), positional=("text",),
             errors=WRITE_ERRORS),
    _cube_op("search", search.search, i.SearchInput, list[Hit], _reading,
             Http("POST", f"{CUBE}/search"), Cli(("search",), ("cube", "query")), mcp="read",
             positional=("query", "top_k")),
    _cube_op("get", memories.get, i.GetInput, MemoryItem, _memory(READ),
             Http("GET", MEMORY), Cli(("get",), ("cube", "memory_id")), mcp="read", positional=("memory_id",)),
    _cube_op("get_all", memories.get_all, i.GetAllInput, MemoryPage, _reading,
             Http("GET", f"{CUBE}/memories"), Cli(("list",), ("cube",)), mcp="read", positional=("filters",)),
    _cube_op("history", memories.history, i.GetInput, list[MemoryItem], _memory(READ),
             Http("GET", f"{MEMORY}/history"), Cli(("history",), ("cube", "memory_id")), mcp="read",
             positional=("memory_id",)),
    _cube_op("links", links.links, i.LinksInput, list[MemoryLink], _memory(READ),
             Http("GET", f"{MEMORY}/links"), Cli(("links",), ("cube", "memory_id")), mcp="read",
             positional=("memory_id", "kinds")),
    _cube_op("timeline", timeline.timeline, i.TimelineInput, list[TimelineNode], _cube(READ),
             Http("GET", f"{CUBE}/timeline"), Cli(("timeline",), ("cube",)), mcp="read", positional=("level",),
             errors=LLM_ERRORS),
    _cube_op("profile", profile.profile, i.ProfileInput, list[ProfileValue], _cube(READ),
             Http("GET", f"{CUBE}/profile"), Cli(("profile",), ("cube",)), mcp="read", positional=("subject",)),
    _cube_op("operations", memories.operations, i.OperationsInput, list[LogEntry], _cube(READ),
             Http("GET", f"{CUBE}/operations"), Cli(("log",), ("cube",)), mcp="read",
             positional=("memory_id", "limit")),
    _cube_op("update", versions.update, i.UpdateInput, MemoryItem, _memory(WRITE),
             Http("PATCH", MEMORY), Cli(("update",), ("cube", "memory_id", "text")),
             positional=("memory_id", "text"), errors=WRITE_ERRORS),
    _cube_op("invalidate", versions.invalidate, i.InvalidateInput, MemoryItem, _memory(WRITE),
             Http("POST", f"{MEMORY}/invalidate"), Cli(("invalidate",), ("cube", "memory_id")),
             positional=("memory_id",), errors=WRITE_ERRORS),
    _cube_op("delete", memories.delete, i.ChangeInput, Deleted, _cube(WRITE),
             Http("DELETE", MEMORY), Cli(("delete",), ("cube", "memory_id")), mcp="destructive",
             positional=("memory_id",)),
    _cube_op("archive", lifecycle.archive, i.ChangeInput, MemoryItem, _memory(WRITE),
             Http("POST", f"{MEMORY}/archive"), Cli(("archive",), ("cube", "memory_id")), positional=("memory_id",)),
    _cube_op("restore", lifecycle.restore, i.ChangeInput, MemoryItem, _memory(WRITE),
             Http("POST", f"{MEMORY}/restore"), Cli(("restore",), ("cube", "memory_id")), positional=("memory_id",)),
    _cube_op("release", lifecycle.release, i.ChangeInput, MemoryItem, _cube(ADMIN),
             Http("POST", f"{MEMORY}/release"), Cli(("release",), ("cube", "memory_id")), positional=("memory_id",)),
    _cube_op("migrate", compose.migrate, i.MigrateInput, MigrateResult, _memory(WRITE),
             Http("POST", f"{MEMORY}/migrate"), Cli(("migrate",), ("cube", "memory_id", "to")),
             positional=("memory_id", "to"), errors=WRITE_ERRORS),
    _cube_op("chat", chat.chat, i.ChatInput, ChatAnswer,
             lambda a: [OnCube(a.cube, WRITE if a.write_back else READ)],
             Http("POST", f"{CUBE}/chat"), Cli(("chat",), ("cube", "query")), positional=("query",),
             errors=LLM_ERRORS + WRITE_ERRORS),
    # -- cubes ---------------------------------------------------------------------------------------
    _store_op("create_cube", cubes.create_cube, i.CreateCubeInput, CubeInfo, lambda a: [OwnerIsCaller(a.owner)],
              Http("POST", "/cubes", 201), Cli(("cube", "create"), ("name",)),
              positional=("name", "owner", "description"), errors=WRITE_ERRORS),
    _store_op("get_cube", cubes.get_cube, i.CubeInput, CubeInfo, _cube(READ),
              Http("GET", CUBE), Cli(("cube", "get"), ("cube",)), mcp="read", cube_field="cube",
              positional=("cube",)),
    _cube_op("stats", cubes.stats, i.CubeInput, CubeStats, _cube(READ),
             Http("GET", f"{CUBE}/stats"), Cli(("cube", "stats"), ("cube",)), mcp="read"),
    _store_op("list_cubes", cubes.list_cubes, i.ListCubesInput, list[CubeInfo], lambda a: [],
              Http("GET", "/cubes"), Cli(("cube", "list")), mcp="read", positional=("owner",)),
    _store_op("delete_cube", cubes.delete_cube, i.DeleteCubeInput, Deleted, _cube(ADMIN),
              Http("DELETE", CUBE), Cli(("cube", "delete"), ("cube",)), mcp="destructive", cube_field="cube",
              needs_embedder=False, positional=("cube",)),
    _cube_op("dump", portable.dump, i.DumpInput, CubeFile, _cube(READ),
             Http("GET", f"{CUBE}/dump", download="path"), Cli(("cube", "dump"), ("cube", "path")),
             mcp=None, not_on_mcp="it writes a file on the server's disk; use the REST download or the CLI",
             positional=("path",)),
    _store_op("load_cube", portable.load_cube, i.LoadCubeInput, CubeInfo,
              lambda a: [OwnerIsCaller(a.owner), *([StoreAdmin()] if a.keep_policy else [])],
              Http("POST", "/cubes/load", 201, upload="path"), Cli(("cube", "load"), ("path",)),
              mcp=None, not_on_mcp="it reads a file on the server's disk; use the REST upload or the CLI",
              positional=("path", "name", "owner"), errors=FILE_ERRORS),
    _store_op("compose_cubes", compose.compose, i.ComposeInput, ComposeReport,
              lambda a: [OnCube(a.a, READ), OnCube(a.b, READ), OwnerIsCaller(a.owner)],
              Http("POST", "/cubes/compose", 201), Cli(("cube", "compose"), ("a", "b", "name")),
              positional=("a", "b", "name"), errors=WRITE_ERRORS),
    _store_op("fuse_duplicates", compose.fuse_duplicates, i.FuseInput, FuseReport,
              lambda a: [OnCube(c, WRITE) for c in a.cubes],
              Http("POST", "/cubes/fuse"), Cli(("cube", "fuse"), ("cubes",)), positional=("cubes",),
              errors=WRITE_ERRORS),
    # -- activation and parametric memory ------------------------------------------------------------
    _cube_op("activation_build", derived.activation_build, i.ActivationBuildInput, ActivationReport, _cube(WRITE),
             Http("POST", f"{CUBE}/activation"), Cli(("activation", "build"), ("cube",)), errors=LLM_ERRORS),
    _cube_op("activation_status", derived.activation_status, i.CubeInput, ActivationReport, _cube(READ),
             Http("GET", f"{CUBE}/activation"), Cli(("activation", "status"), ("cube",)), mcp="read"),
    _cube_op("activation_drop", derived.activation_drop, i.CubeInput, bool, _cube(WRITE),
             Http("DELETE", f"{CUBE}/activation"), Cli(("activation", "drop"), ("cube",)), mcp="destructive"),
    _cube_op("parametric_distil", derived.parametric_distil, i.ParametricDistilInput, AdapterReport, _cube(WRITE),
             Http("POST", f"{CUBE}/parametric"), Cli(("parametric", "distil"), ("cube",)), errors=LLM_ERRORS),
    _cube_op("parametric_ask", derived.parametric_ask, i.ParametricAskInput, ParametricAnswer, _cube(READ),
             Http("POST", f"{CUBE}/parametric/ask"), Cli(("parametric", "ask"), ("cube", "query")), mcp="read",
             positional=("query",), errors=LLM_ERRORS),
    _cube_op("parametric_status", derived.parametric_status, i.CubeInput, AdapterReport, _cube(READ),
             Http("GET", f"{CUBE}/parametric"), Cli(("parametric", "status"), ("cube",)), mcp="read"),
    _cube_op("parametric_forget", derived.parametric_forget, i.CubeInput, bool, _cube(WRITE),
             Http("DELETE", f"{CUBE}/parametric"), Cli(("parametric", "forget"), ("cube",)), mcp="destructive"),
    # -- grants and policy ---------------------------------------------------------------------------
    _store_op("grant", governance.grant, i.GrantInput, Grant, _cube(ADMIN),
              Http("PUT", f"{CUBE}/grants/{{user_id}}"), Cli(("grant",), ("cube", "user_id", "permission")),
              cube_field="cube", needs_embedder=False, positional=("cube", "user_id", "permission")),
    _store_op("revoke", governance.revoke, i.RevokeInput, bool, _cube(ADMIN),
              Http("DELETE", f"{CUBE}/grants/{{user_id}}"), Cli(("revoke",), ("cube", "user_id")), mcp="destructive",
              cube_field="cube", needs_embedder=False, positional=("cube", "user_id")),
    _store_op("grants", governance.grants, i.CubeInput, list[Grant], _cube(ADMIN),
              Http("GET", f"{CUBE}/grants"), Cli(("grants",), ("cube",)), mcp="read", cube_field="cube",
              needs_embedder=False, positional=("cube",)),
    _store_op("policy", governance.policy, i.CubeInput, CubePolicy, _cube(READ),
              Http("GET", f"{CUBE}/policy"), Cli(("policy", "show"), ("cube",)), mcp="read", cube_field="cube",
              needs_embedder=False, positional=("cube",)),
    _store_op("set_policy", governance.set_policy, i.SetPolicyInput, CubePolicy, _cube(ADMIN),
              Http("PATCH", f"{CUBE}/policy"), Cli(("policy", "set"), ("cube",)), cube_field="cube",
              needs_embedder=False, positional=("cube",), only_given=True),
    # -- users and keys ------------------------------------------------------------------------------
    _store_op("create_user", governance.create_user, i.CreateUserInput, User, lambda a: [StoreAdmin()],
              Http("POST", "/users", 201), Cli(("user", "create"), ("name",)), positional=("name", "role"),
              errors=WRITE_ERRORS),
    _store_op("get_user", governance.get_user, i.UserInput, User, lambda a: [SelfOrAdmin(a.user_id)],
              Http("GET", "/users/{user_id}"), Cli(("user", "get"), ("user_id",)), mcp="read",
              positional=("user_id",)),
    _store_op("list_users", governance.list_users, i.NoInput, list[User], lambda a: [StoreAdmin()],
              Http("GET", "/users"), Cli(("user", "list")), mcp="read"),
    _store_op("whoami", governance.whoami, i.NoInput, User | None, lambda a: [],
              Http("GET", "/me"), Cli(("user", "whoami")), mcp="read"),
    _store_op("forget_user", governance.forget_user, i.UserInput, list[str], lambda a: [SelfOrAdmin(a.user_id)],
              Http("DELETE", "/users/{user_id}"), Cli(("user", "forget"), ("user_id",)), mcp="destructive",
              positional=("user_id",)),
    _store_op("create_api_key", governance.create_api_key, i.UserInput, str, lambda a: [SelfOrAdmin(a.user_id)],
              Http("POST", "/users/{user_id}/keys", 201), Cli(("key", "create"), ("user_id",)),
              mcp=None, not_on_mcp="a key is a secret shown once: it does not belong in a model's context",
              positional=("user_id",)),
    _store_op("api_keys", governance.api_keys, i.UserInput, list[ApiKeyInfo], lambda a: [SelfOrAdmin(a.user_id)],
              Http("GET", "/users/{user_id}/keys"), Cli(("key", "list"), ("user_id",)), mcp="read",
              positional=("user_id",)),
    _store_op("revoke_api_key", governance.revoke_api_key, i.RevokeKeyInput, ApiKeyInfo,
              lambda a: [KeyOwnerOrAdmin(a.key)],
              Http("DELETE", "/keys/{key}"), Cli(("key", "revoke"), ("key",)), mcp="destructive",
              positional=("key",)),
    # -- audit, retention ----------------------------------------------------------------------------
    _store_op("audit", governance.audit, i.AuditInput, list[AuditEntry],
              lambda a: [SelfOrAdmin(a.user)] if a.user is not None else [],
              Http("GET", "/audit"), Cli(("audit",)), mcp="read", positional=("cube", "user", "since", "limit")),
    _store_op("apply_retention", governance.apply_retention, i.RetentionInput, RetentionReport,
              lambda a: [StoreAdmin()], Http("POST", "/admin/retention"), Cli(("retention",)),
              positional=("now",)),
    # -- the scheduler's queue -----------------------------------------------------------------------
    _store_op("enqueue_job", jobs.enqueue_job, i.EnqueueJobInput, Job,
              lambda a: [OnCube(a.cube, WRITE)] if a.cube is not None else [StoreAdmin()],
              Http("POST", "/jobs", 201), Cli(("scheduler", "enqueue"), ("type",)), cube_field="cube",
              positional=("type", "cube", "payload")),
    _store_op("scheduler_status", jobs.scheduler_status, i.SchedulerStatusInput, SchedulerStatus,
              lambda a: [OnCube(a.cube, READ)] if a.cube is not None else [StoreAdmin()],
              Http("GET", "/jobs"), Cli(("scheduler", "status")), mcp="read", cube_field="cube",
              needs_embedder=False, positional=("cube",)),
    _store_op("retry_job", jobs.retry_job, i.RetryJobInput, Job, lambda a: [StoreAdmin()],
              Http("POST", "/jobs/{job_id}/retry"), Cli(("scheduler", "retry"), ("job_id",)),
              positional=("job_id",)),
]

#: Every public operation by name.
OPERATIONS: dict[str, Operation] = {op.name: op for op in _OPERATIONS}
assert len(OPERATIONS) == len(_OPERATIONS), "two operations share a name"
