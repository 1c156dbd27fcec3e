"""The arguments of every operation, as one Pydantic model each.

These models are the single description of what an operation takes: the dispatcher
validates every call against them (so the Python API, REST, MCP and the CLI refuse the
same values with the same words), the REST routes and MCP tools take their schemas from
them, and the CLI builds its options from them. Field names are the keyword arguments of
the Python methods; ``cube`` is the cube an operation addresses (a name or an id), which a
``MemCube`` handle fills in itself.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, model_validator

from memkern.models import (
    Filters,
    LinkKind,
    MemoryKind,
    Message,
    Permission,
    Provenance,
    Role,
    User,
)
from memkern.retrieval.config import RECIPES, SearchConfig
from memkern.validation import (
    CubeName,
    CubeRef,
    MemoryId,
    Metadata,
    Name,
    Note,
    Query,
    Tags,
    Text,
    Time,
    UserId,
    check_name,
    check_text,
)

#: Most messages one ``add`` takes; larger imports are split by the caller (the CLI does it).
MAX_MESSAGES_PER_ADD = 10_000
MAX_TOP_K = 1_000
#: Most memories one page of ``get_all`` holds.
MAX_PAGE = 1_000
#: Most links of one kind ``links`` returns.
MAX_LINKS = 100
#: Largest offset accepted when paging (SQLite integers are 64-bit; JSON numbers are exact to 2**53).
MAX_OFFSET = 2**53


def _user_id(value: Any) -> Any:
    """A ``User`` given where a user id is expected stands for its id."""
    return value.id if isinstance(value, User) else value


def _recipe(value: Any) -> Any:
    if isinstance(value, str) and value not in RECIPES:
        raise ValueError(f"unknown search recipe {value!r}; known: {', '.join(sorted(RECIPES))}")
    return value


def _checked_messages(messages: list[Message]) -> list[Message]:
    for position, message in enumerate(messages):
        check_text(message.content, f"messages[{position}].content")
        check_name(message.role, f"messages[{position}].role")
        for field in ("image_caption", "name", "id"):
            if getattr(message, field) is not None:
                check_text(getattr(message, field), f"messages[{position}].{field}")
    return messages


def _messages(value: Any) -> Any:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError("messages must be a list of {'role', 'content', ...} objects")
    if not value:
        raise ValueError("messages is empty: give at least one message")
    if len(value) > MAX_MESSAGES_PER_ADD:
        raise ValueError(f"{len(value):,} messages in one add; the limit is {MAX_MESSAGES_PER_ADD:,} "
                         "(split larger imports)")
    return value


UserRef = Annotated[UserId, BeforeValidator(_user_id)]
Recipe = Annotated[str, BeforeValidator(_recipe)]
Messages = Annotated[list[Message], BeforeValidator(_messages), Field(min_length=1, max_length=MAX_MESSAGES_PER_ADD)]
TopK = Annotated[StrictInt, Field(ge=1, le=MAX_TOP_K)]
Days = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Input(BaseModel):
    """Base of the input models: unknown arguments are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=False)


class CubeInput(Input):
    cube: CubeRef = Field(description="The cube: its name or id.")


class MemoryInput(CubeInput):
    memory_id: MemoryId = Field(description="The memory's id.")


# -- memories -------------------------------------------------------------------------------------------
class AddInput(CubeInput):
    messages: Messages | None = Field(None, description="Chat messages, stored in order as turn memories: role, "
                                                        "content, and optionally name (the speaker), time and id.")
    text: Text | None = Field(None, description="One memory to store instead of messages.")
    session_id: Name | None = Field(None, description="The conversation the memories belong to.")
    kind: MemoryKind = Field(MemoryKind.FACT, description="What a text memory is (messages are always turns).")
    tags: Tags = Field(default_factory=list, description="Labels to filter on later.")
    metadata: Metadata | None = None
    time: Time | None = Field(None, description="When a text memory happened or was said.")
    actor: Note | None = Field(None, description="Who the operation log names (the user, when authenticated).")
    infer: StrictBool | None = Field(None, description="Extract and decide on facts with the LLM (default: when "
                                                       "there is one); false stores as given.")
    background: StrictBool = Field(False, description="Store the turns and queue the extraction as a job.")

    @model_validator(mode="after")
    def _one_of(self) -> AddInput:
        if (self.messages is None) == (self.text is None):
            raise ValueError("give either messages or text to add")
        if self.messages is not None:
            _checked_messages(self.messages)
        return self


class AddDocumentInput(CubeInput):
    text: Text = Field(description="The document's text.")
    path: Name | None = Field(None, description="Where the document came from.")
    time: Time | None = None
    tags: Tags = Field(default_factory=list)
    actor: Note | None = None


class UpdateInput(MemoryInput):
    text: Text | None = Field(None, description="The new text.")
    tags: Tags | None = None
    metadata: Metadata | None = None
    valid_from: Time | None = Field(None, description="When the world changed (the old version stops being "
                                                      "true then); without it the update is a correction.")
    event_time: Time | None = None
    provenance: Provenance | None = Field(None, description="The source of the new version.")
    reason: Note | None = Field(None, description="Why it changed; kept in the history.")
    actor: Note | None = None


class InvalidateInput(MemoryInput):
    at: Time | None = Field(None, description="When it stopped being true (default: now).")
    reason: Note | None = None
    metadata: Metadata | None = Field(None, description="The evidence, merged into the new version's metadata.")
    actor: Note | None = None


class ChangeInput(MemoryInput):
    """Delete, archive, restore or release one memory."""

    reason: Note | None = Field(None, description="Why; kept in the operation log.")
    actor: Note | None = None


class GetInput(MemoryInput):
    pass


class GetAllInput(CubeInput):
    filters: Filters | None = None
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_PAGE)] = 100
    offset: Annotated[StrictInt, Field(ge=0, le=MAX_OFFSET)] = 0


class ProfileInput(CubeInput):
    subject: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        None, description="Only this subject's slots (a speaker's name, case-insensitive).")


class LinksInput(MemoryInput):
    kinds: list[LinkKind] | None = Field(None, description="Only links of these kinds (default: every kind).")
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_LINKS)] = Field(10, description="Most links of each kind.")


class TimelineInput(CubeInput):
    level: Literal["session", "day", "week", "month"] = Field(
        "month", description="The level of the tree to list: session, day, week or month.")
    since: date | None = Field(None, description="Only nodes whose sessions started on or after this day.")
    until: date | None = Field(None, description="Only nodes whose sessions started on or before this day.")
    summarize: StrictBool = Field(False, description="Add the LLM's summary of each node (needs an LLM).")
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_PAGE)] = Field(100, description="Most nodes listed, oldest first.")


class OperationsInput(CubeInput):
    memory_id: MemoryId | None = Field(None, description="Only this memory's operations.")
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_OFFSET)] | None = None


class SearchInput(CubeInput):
    query: Query = Field(description="What to look for, in words (a question works well).")
    top_k: TopK = Field(5, description="How many hits to return, best first.")
    filters: Filters | None = None
    config: SearchConfig | Recipe | None = Field(None, description="A search recipe by name (hybrid, lexical, "
                                                                  "dense, recent) or a whole configuration.")


class ChatInput(CubeInput):
    query: Query
    top_k: TopK = 8
    write_back: StrictBool = Field(False, description="Store the question and the answer as two turns.")
    session_id: Name | None = None
    filters: Filters | None = None
    config: SearchConfig | Recipe | None = None
    use_activation: StrictBool | None = Field(None, description="Answer with the cube's activation memory "
                                                               "(default: when fresh and the LLM is local).")


class MigrateInput(MemoryInput):
    to: Name = Field(description="fact, event, preference, summary, document, activation or parametric.")
    reason: Text = Field(description="Why; kept in the history.")
    text: Text | None = Field(None, description="The new memory's text (a turn rewritten as a fact).")
    actor: Note | None = None


# -- cubes ----------------------------------------------------------------------------------------------
class CreateCubeInput(Input):
    name: CubeName = Field(description="The cube's name, unique in the store.")
    owner: Name | None = Field(None, description="Who the cube belongs to (default: the caller; only admins "
                                                 "give someone else).")
    description: Note = ""


class ListCubesInput(Input):
    owner: Name | None = Field(None, description="Only this owner's cubes.")


class DeleteCubeInput(CubeInput):
    actor: Note | None = None


class DumpInput(CubeInput):
    path: Name = Field(description="Where to write the cube file.")


class LoadCubeInput(Input):
    path: Name = Field(description="The cube file to load.")
    name: CubeName | None = Field(None, description="The loaded cube's name (default: the file's).")
    owner: Name | None = Field(None, description="The loaded cube's owner (default: the caller, or the file's).")
    keep_policy: bool = Field(False, description="Keep the policy the file carries (guard, PII redaction, "
                                                 "retention) instead of the default one; needs the admin role.")


class ComposeInput(Input):
    a: CubeRef = Field(description="The first source cube.")
    b: CubeRef = Field(description="The second source cube.")
    name: CubeName = Field(description="The new cube's name.")
    owner: Name | None = None
    description: Note = ""
    actor: Note | None = None


class FuseInput(Input):
    cubes: Annotated[list[CubeRef], Field(min_length=1, max_length=100)]
    cosine: Annotated[StrictFloat | StrictInt, Field(gt=0, le=1)] = 0.95
    actor: Note | None = None
    reason: Note = "duplicate"


# -- activation and parametric memory ------------------------------------------------------------------
class ActivationBuildInput(CubeInput):
    max_tokens: Annotated[StrictInt, Field(ge=64, le=32_768)] = 1024


class ParametricDistilInput(CubeInput):
    max_facts: Annotated[StrictInt, Field(ge=1, le=10_000)] = 64
    epochs: Annotated[StrictInt, Field(ge=1, le=1_000)] = 8
    rank: Annotated[StrictInt, Field(ge=1, le=64)] = 8


class ParametricAskInput(CubeInput):
    query: Query
    use_adapter: StrictBool = Field(True, description="False asks the base model alone (for comparison).")


# -- governance -----------------------------------------------------------------------------------------
class CreateUserInput(Input):
    name: Name
    role: Role = Role.USER
    user_id: UserId | None = Field(None, description="The user id (default: a random one).")


class UserInput(Input):
    user_id: UserRef


class NoInput(Input):
    pass


class RevokeKeyInput(Input):
    key: Name = Field(description="The key, or its prefix (the 12 hex digits after mk_).")


class GrantInput(CubeInput):
    user_id: UserRef
    permission: Permission


class RevokeInput(CubeInput):
    user_id: UserRef


class SetPolicyInput(CubeInput):
    """Only the keys given change; the others keep their value."""

    archive_after_days: Days | None = Field(None, description="Archive memories not accessed for this long.")
    forget_after_days: Days | None = Field(None, description="Delete memories not accessed for this long.")
    # A boolean key has no "cleared" value: null is refused (unset keys keep their value).
    redact_pii: StrictBool = Field(None, description="Replace detected PII by placeholders.")  # type: ignore[assignment]
    guard: StrictBool = Field(None, description="Quarantine memories carrying instructions for the model.")  # type: ignore[assignment]


class AuditInput(Input):
    cube: CubeRef | None = Field(None, description="Only this cube (name or id).")
    user: UserRef | None = Field(None, description="Only this user (id).")
    since: Time | None = None
    limit: Annotated[StrictInt, Field(ge=1)] | None = Field(100, description="Most entries (None: all).")


class RetentionInput(Input):
    now: Time | None = Field(None, description="Apply as of this time (default: now).")


# -- the scheduler's queue ------------------------------------------------------------------------------
class EnqueueJobInput(Input):
    type: Name = Field(description="extract, organize, promote, distil, demote, rebuild, or a registered one.")
    cube: CubeRef | None = None
    payload: Metadata | None = None
    dedup_key: Name | None = None
    delay_s: Annotated[float, Field(ge=0, le=365 * 86_400, allow_inf_nan=False)] = 0.0


class SchedulerStatusInput(Input):
    cube: CubeRef | None = None


class RetryJobInput(Input):
    job_id: Name

