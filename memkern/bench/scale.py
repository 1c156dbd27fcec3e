"""Ingest and search speed at scale: ``memkern bench scale --items 100000 [--queries 200]``.

Synthetic but realistic conversations are generated from templates (people, places,
activities, objects, pets, jobs, foods, relative dates...; deterministic for a seed, with
millions of possible combinations), ingested into a fresh cube in a temporary store
through the public API (``cube.add(messages=..., session_id=...)``, one call per session
of about 20 turns), then searched with questions built from turns that were stored.

Search time is ``cube.search`` end to end (query embedding, lexical and dense search,
fusion, fetching the memories), measured per query after one untimed warm-up search
that loads the index (reported separately as ``first_search_ms``). The first search of a
new process on the closed store is also timed, with that process's memory (``fresh_process``):
``cold`` without the saved index copy (``memkern.retrieval.snapshot``), ``warm`` with the copy
the cold process saved (with its approximate graph and profile); each then asks its first
question about a profile slot ("What did Olivia's dog chew up?"), which reads every turn in the
cold process and starts from the profile saved with the copy in the warm one. ``--store-dir`` keeps the store, and a later run of the same corpus
reuses it instead of ingesting again. The same questions
are timed with the hybrid, lexical-only and dense-only recipes; ``hit_at_10`` says how
often the turn a question was built from came back in the top 10, a sanity check rather
than a quality benchmark (many synthetic turns are alike).
"""

from __future__ import annotations

import json
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from memkern.reader.temporal import MONTH_NAMES
from memkern.retrieval.ann import ANN_MIN_ROWS

#: ``progress(label, done, total)``, like :mod:`memkern.bench.locomo`'s: labels are "ingest" and
#: "search <recipe>"; one unit per turn ingested and per question searched.
ProgressCallback = Callable[[str, int, int], None]

RECIPES_TIMED = ("hybrid", "lexical", "dense")
#: Questions about other statements asked before the timed searches, untimed: the first searches of a
#: process read pages, saved parts and terms' counts that later searches find ready (the first search and
#: the first question about a profile slot are timed apart). At a million turns, without them, the hybrid
#: recipe (timed first) measured p95 173 ms where later passes of the same questions measured 79-83 ms.
WARMUP_QUESTIONS = 50
TOP_K = 10
#: Memories whose links are timed, and nodes of each timeline level listed, after the searches.
LINKS_TIMED = 50
TIMELINE_NODES = 100

# ------------------------------------------------------------------------------------ vocabulary

PEOPLE = ["Alice", "Bruno", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Keiko", "Liam", "Maya", "Nikolai", "Olivia", "Pedro", "Quentin", "Rosa", "Samir", "Tara", "Umar", "Valentina", "Wei", "Ximena", "Yusuf", "Zoe", "Amara", "Ben", "Carmen", "Diego", "Emma", "Felix", "Gabriela", "Hugo", "Ingrid", "Jamal", "Kira", "Lucas", "Mei", "Noah", "Omar", "Priya", "Rafael", "Sofia", "Tomas", "Ursula", "Victor", "Wanda", "Xavier", "Yara", "Zane", "Aisha", "Boris", "Clara", "Dmitri", "Esther", "Finn", "Greta", "Hassan", "Isla", "Jin", "Kofi", "Lena", "Marco", "Nadia", "Oscar", "Paula", "Ravi", "Sana", "Theo", "Uma", "Vera", "Will", "Yuki", "Anton", "Bianca", "Caleb", "Daria"]

RELATIVES = ["sister", "brother", "mom", "dad", "cousin", "grandmother", "grandfather", "aunt", "uncle",
             "best friend", "roommate", "partner", "neighbour", "colleague", "niece", "nephew"]

CITIES = ["Lisbon", "Porto", "Madrid", "Seville", "Barcelona", "Paris", "Lyon", "Marseille", "Berlin", "Hamburg",
          "Munich", "Vienna", "Prague", "Budapest", "Krakow", "Warsaw", "Copenhagen", "Stockholm", "Oslo",
          "Helsinki", "Amsterdam", "Rotterdam", "Brussels", "Ghent", "Dublin", "Edinburgh", "London", "Bristol",
          "Rome", "Florence", "Naples", "Milan", "Venice", "Athens", "Istanbul", "Tbilisi", "Marrakesh", "Cairo",
          "Nairobi", "Cape Town", "Tokyo", "Kyoto", "Osaka", "Seoul", "Taipei", "Hanoi", "Bangkok", "Singapore",
          "Sydney", "Melbourne", "Auckland", "Vancouver", "Montreal", "Toronto", "Chicago", "Boston", "Denver",
          "Austin", "Seattle", "Mexico City", "Oaxaca", "Bogota", "Lima", "Santiago", "Buenos Aires"]

VENUES = ["the farmers market", "a jazz bar", "the old library", "a tiny ramen shop", "the botanical garden",
          "a rooftop cafe", "the science museum", "an open-air cinema", "the climbing gym", "a vinyl record store",
          "the harbour", "a night market", "the city aquarium", "a pottery studio", "the concert hall",
          "a bookshop by the river", "the flea market", "a community garden", "the art gallery downtown",
          "a board game cafe", "the public pool", "a yoga studio", "the football stadium", "a food truck festival",
          "the planetarium", "a bakery near the station", "the lake shore", "a cooking school", "the zoo",
          "a karaoke bar"]

ACTIVITIES = [("go kayaking", "went kayaking"), ("try rock climbing", "tried rock climbing"),
              ("go to a pottery class", "went to a pottery class"), ("run a half marathon", "ran a half marathon"),
              ("go camping", "went camping"), ("take a salsa lesson", "took a salsa lesson"),
              ("go birdwatching", "went birdwatching"), ("visit a wine cellar", "visited a wine cellar"),
              ("go snorkelling", "went snorkelling"), ("take a photography workshop",
                                                        "took a photography workshop"),
              ("go to a poetry reading", "went to a poetry reading"), ("go cycling", "went cycling"),
              ("go skiing", "went skiing"), ("volunteer at an animal shelter", "volunteered at an animal shelter"),
              ("play in a chess tournament", "played in a chess tournament"), ("go paddleboarding",
                                                                                "went paddleboarding"),
              ("bake sourdough bread", "baked sourdough bread"), ("go to a live concert", "went to a live concert"),
              ("paint a mural", "painted a mural"), ("go horse riding", "went horse riding"),
              ("try scuba diving", "tried scuba diving"), ("go on a food tour", "went on a food tour"),
              ("learn to surf", "learned to surf"), ("go hiking", "went hiking"),
              ("go to a comedy show", "went to a comedy show"), ("take a cooking class", "took a cooking class"),
              ("go ice skating", "went ice skating"), ("play beach volleyball", "played beach volleyball"),
              ("go fishing", "went fishing"), ("do a escape room", "did an escape room"),
              ("go stargazing", "went stargazing"), ("run a trail race", "ran a trail race"),
              ("go to a book club", "went to a book club"), ("visit a castle", "visited a castle"),
              ("go sailing", "went sailing"), ("try archery", "tried archery")]

OBJECTS = ["a vintage film camera", "a pair of hiking boots", "a secondhand guitar", "a cast iron pan",
           "a mechanical keyboard", "a cookbook about Thai food", "a road bike", "a telescope", "a sewing machine",
           "a set of watercolour paints", "a record player", "a tent for two", "an espresso machine",
           "a wool coat", "a houseplant called a monstera", "a drone", "a ukulele", "a board game about trains",
           "a pair of running shoes", "a standing desk", "a kayak paddle", "a leather notebook", "a sourdough starter",
           "a fountain pen", "an electric scooter", "a noise cancelling headset", "a chess set", "a yoga mat",
           "a bread machine", "a pottery wheel", "a snowboard", "a rice cooker", "a hammock", "a sketchbook",
           "a polaroid camera", "a vintage map of the city", "a fish tank", "a bird feeder", "a climbing harness",
           "a pair of binoculars"]

PETS = [("dog", "Biscuit"), ("cat", "Pepper"), ("dog", "Luna"), ("cat", "Mochi"), ("parrot", "Kiwi"),
        ("rabbit", "Clover"), ("dog", "Max"), ("cat", "Olive"), ("hamster", "Peanut"), ("turtle", "Sheldon"),
        ("dog", "Nala"), ("cat", "Ziggy"), ("dog", "Rocket"), ("cat", "Saffron"), ("guinea pig", "Nugget"),
        ("dog", "Bruno"), ("cat", "Tofu"), ("dog", "Hazel"), ("cat", "Pixel"), ("ferret", "Bandit")]

JOBS = ["nurse", "software engineer", "high school teacher", "architect", "chef", "data analyst", "pharmacist",
        "graphic designer", "electrician", "journalist", "veterinarian", "accountant", "firefighter",
        "physiotherapist", "translator", "marine biologist", "pilot", "librarian", "carpenter", "dentist",
        "product manager", "social worker", "photographer", "baker", "lawyer", "urban planner", "barista",
        "museum curator", "paramedic", "music teacher"]

FOODS = ["spicy ramen", "mushroom risotto", "fish tacos", "lentil curry", "pad thai", "margherita pizza",
         "falafel wraps", "beef pho", "paella", "dumplings", "shakshuka", "sushi", "chili con carne", "pierogi",
         "a lemon tart", "banana pancakes", "green curry", "lasagna", "tom yum soup", "empanadas", "bibimbap",
         "moussaka", "gnocchi", "a chocolate cake"]

HOBBIES = ["knitting", "woodworking", "playing the piano", "gardening", "birdwatching", "learning Japanese",
           "writing short stories", "restoring old furniture", "making candles", "photography", "chess",
           "rock climbing", "calligraphy", "baking bread", "playing the cello", "bouldering", "origami",
           "collecting stamps", "brewing kombucha", "sketching buildings"]

WHEN = ["yesterday", "last Saturday", "last Sunday", "last weekend", "last week", "two weeks ago", "last month",
        "on Friday night", "this morning", "a few days ago", "last summer", "over the holidays"]

FEELINGS = ["exhausted but happy", "really proud", "a bit nervous", "so relaxed", "completely amazed",
            "pretty overwhelmed", "super excited", "grateful", "inspired", "nostalgic"]

# A template is (statement, question or None). Slots: {name} the speaker, {other} the listener,
# and the vocabulary above; a question is asked about the speaker, in the third person.
STATEMENTS: list[tuple[str, str | None]] = [
    ("I {act_past} in {city} with my {relative} {when}.", "Where did {name} {act_base} with their {relative}?"),
    ("{when_cap} I {act_past} near {city}, and I felt {feeling} afterwards.", "How did {name} feel after they {act_past} near {city}?"),
    ("I finally bought {object} at {venue} in {city}.", "What did {name} buy at {venue}?"),
    ("My {relative} gave me {object} for my birthday.", "What did {name} get from their {relative} for their birthday?"),
    ("I adopted a {pet_kind} named {pet_name} {when}.", "What is the name of {name}'s {pet_kind}?"),
    ("{pet_name}, my {pet_kind}, chewed up my {object_bare} {when}.", "What did {name}'s {pet_kind} chew up?"),
    ("I started a new job as a {job} in {city}.", "What is {name}'s new job?"),
    ("I've been working as a {job} for {years} years now.", "How long has {name} worked as a {job}?"),
    ("I cooked {food} for my {relative} {when} and they loved it.", "What did {name} cook for their {relative}?"),
    ("My favourite dish is {food}, especially the one from {venue} in {city}.", "What is {name}'s favourite dish?"),
    ("I've picked up {hobby} as a new hobby.", "What new hobby did {name} pick up?"),
    ("I spend most of my evenings on {hobby} these days.", "What does {name} do in the evenings?"),
    ("I'm planning a trip to {city} in {month} to {act_base}.", "Where is {name} travelling in {month}?"),
    ("We're moving to {city} in {month} because my {relative} found a job there.", "Where is {name} moving to?"),
    ("I met my {relative} at {venue} in {city} {when}.", "Where did {name} meet their {relative}?"),
    ("I lost my {object_bare} at {venue} {when}, I'm so annoyed.", "Where did {name} lose their {object_bare}?"),
    ("I signed up for a class to {act_base} every {weekday}.", "What class did {name} sign up for?"),
    ("My {relative} is visiting from {city} next {weekday}.", "Who is visiting {name} from {city}?"),
    ("I read a great book about {hobby} {when}.", "What was the book {name} read about?"),
    ("I volunteered at {venue} in {city} {when}; it made me feel {feeling}.", "Where did {name} volunteer?"),
    ("I'm allergic to {allergen}, so I have to be careful with {food}.", "What is {name} allergic to?"),
    ("I won a prize for {hobby} at a contest in {city} {when}.", "What did {name} win a prize for?"),
    ("I've saved up enough money to buy {object} next month.", "What is {name} saving up for?"),
    ("My {relative} and I {act_past} {when}, it was the first time for both of us.",
     "What did {name} do with their {relative} for the first time?"),
]
REPLIES = [
    "That sounds amazing, {name}! How was it?", "Oh nice, I've always wanted to {act_base}.",
    "Wow, {city} must have been lovely this time of year.", "Ha, that's so typical of your {relative}.",
    "I'm really happy for you!", "Did you take any photos?", "That reminds me of my trip to {city}.",
    "How long did it take you?", "You should tell me more about it next time.", "I can't believe it, {name}!",
    "What made you decide to do that?", "That's a big change. How are you feeling about it?",
    "I love {food}, we should cook it together sometime.", "My {relative} would love that too.",
    "Sounds like you had a great {weekday}.", "Was it expensive?", "I hope {pet_name} is doing okay.",
    "I've been meaning to try {hobby} myself.", "Let me know if you need any help with that.",
    "That's hilarious.",
]
#: Said before a statement or a reply, or after it, so that turns vary like real chat does.
OPENERS = ["", "", "", "", "Oh, ", "By the way, ", "Guess what: ", "Honestly, ", "So, ", "Funny story: ",
           "Hey {other}! ", "Okay so ", "Quick update: ", "You won't believe it, ", "Well, "]
TAILS = ["", "", "", "", " Anyway, how was your {weekday}?", " We should meet up in {city} soon.",
         " My {relative} says hi.", " I'll send you pictures later.", " I felt {feeling} about it, to be honest.",
         " What about you, {other}?", " I still can't stop thinking about it.", " Remind me to tell you more.",
         " Let's talk about it over {food} sometime.", " Not bad for a {weekday}, right?"]
ALLERGENS = ["peanuts", "shellfish", "gluten", "cats", "pollen", "dairy", "sesame", "kiwi", "almonds", "eggs"]
MONTHS = [name.capitalize() for name in MONTH_NAMES]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@dataclass
class Question:
    text: str
    #: Id of the message the question was built from.
    target: str


@dataclass
class Corpus:
    sessions: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    #: Other statements' questions, asked untimed before the timed searches (``WARMUP_QUESTIONS``).
    warmup: list[Question] = field(default_factory=list)

    @property
    def n_turns(self) -> int:
        return sum(len(messages) for _, messages in self.sessions)


def _slots(rng: random.Random, name: str, other: str) -> dict[str, Any]:
    act_base, act_past = rng.choice(ACTIVITIES)
    pet_kind, pet_name = rng.choice(PETS)
    obj = rng.choice(OBJECTS)
    when = rng.choice(WHEN)
    return {
        "name": name, "other": other, "act_base": act_base, "act_past": act_past, "city": rng.choice(CITIES),
        "venue": rng.choice(VENUES), "relative": rng.choice(RELATIVES), "when": when, "when_cap": when[0].upper()
        + when[1:], "feeling": rng.choice(FEELINGS), "object": obj, "object_bare": obj.split(" ", 1)[1],
        "pet_kind": pet_kind, "pet_name": pet_name, "job": rng.choice(JOBS), "years": rng.randint(2, 25),
        "food": rng.choice(FOODS), "hobby": rng.choice(HOBBIES), "month": rng.choice(MONTHS),
        "weekday": rng.choice(WEEKDAYS), "allergen": rng.choice(ALLERGENS),
    }


def _decorate(rng: random.Random, sentence: str, slots: dict[str, Any], opener: bool = True) -> str:
    start = rng.choice(OPENERS).format(**slots) if opener else ""
    if start and not start.endswith("! ") and not sentence.startswith(("I ", "I'")):
        sentence = sentence[0].lower() + sentence[1:]
    return start + sentence + rng.choice(TAILS).format(**slots)


def generate(items: int, queries: int, seed: int = 7, turns_per_session: int = 20) -> Corpus:
    """``items`` turns in sessions of about ``turns_per_session`` between pairs of people, and
    ``queries`` questions about statements among them. Deterministic for ``seed``."""
    rng = random.Random(seed)
    corpus = Corpus()
    statements: list[tuple[str, str, dict[str, Any]]] = []  # (message id, question template, slots)
    clock = datetime(2022, 1, 3, 9, 0, tzinfo=timezone.utc)
    made = 0
    number = 0
    while made < items:
        number += 1
        size = min(items - made, max(2, turns_per_session + rng.randint(-4, 4)))
        first, second = rng.sample(PEOPLE, 2)
        session_id = f"s{number:06d}"
        clock += timedelta(hours=rng.randint(2, 60), minutes=rng.randint(0, 59))
        when = clock
        messages = []
        for turn in range(size):
            speaker, listener = (first, second) if turn % 2 == 0 else (second, first)
            slots = _slots(rng, speaker, listener)
            message_id = f"{session_id}-{turn:02d}"
            if turn % 2 == 0 or rng.random() < 0.35:
                statement, question = rng.choice(STATEMENTS)
                content = _decorate(rng, statement.format(**slots), slots)
                if question is not None:
                    statements.append((message_id, question, slots))
            else:
                content = _decorate(rng, rng.choice(REPLIES).format(**{**slots, "name": listener}), slots,
                                    opener=False)
            messages.append({"role": "user" if turn % 2 == 0 else "assistant", "name": speaker, "content": content,
                             "time": when.isoformat(), "id": message_id})
            when += timedelta(minutes=rng.randint(1, 4), seconds=rng.randint(0, 59))
        clock = when
        corpus.sessions.append((session_id, messages))
        made += size
    asked = rng.sample(range(len(statements)), min(queries, len(statements)))
    for message_id, question, slots in map(statements.__getitem__, asked):
        corpus.questions.append(Question(question.format(**slots), message_id))
    others = sorted(set(range(len(statements))) - set(asked))
    for message_id, question, slots in map(statements.__getitem__, random.Random(seed + 1).sample(
            others, min(WARMUP_QUESTIONS, len(others)))):
        corpus.warmup.append(Question(question.format(**slots), message_id))
    while len(corpus.questions) < queries and statements:  # tiny corpora: reuse statements
        message_id, question, slots = rng.choice(statements)
        corpus.questions.append(Question(question.format(**slots), message_id))
    return corpus


def _percentile_ms(seconds: Sequence[float], pct: float) -> float | None:
    if not seconds:
        return None
    ordered = sorted(seconds)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    value = ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
    return round(value * 1000, 2)


def resident_mb() -> dict[str, float | None]:
    """Memory of this process: resident now and its peak, in MB (Linux; peak only elsewhere)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    now = None
    try:
        with open("/proc/self/statm") as statm:
            now = int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        pass
    return {"rss_mb": round(now, 1) if now is not None else None, "peak_rss_mb": round(peak, 1)}


def _store_files(directory: Path) -> dict[str, int]:
    """Size of every file of the store (the database, its write-ahead log...), largest first."""
    sizes = {p.name: p.stat().st_size for p in directory.iterdir() if p.is_file()}
    return dict(sorted(sizes.items(), key=lambda pair: -pair[1]))


#: The store's file in the bench's directory, and the note written beside it once ingestion is complete.
STORE_FILE = "scale.db"
BUILT_NOTE = "scale-built.json"


def run_scale(items: int = 100_000, queries: int = 200, seed: int = 7, progress: ProgressCallback | None = None,
              *, turns_per_session: int = 20, workdir: str | Path | None = None, embedder: Any = None,
              store_dir: str | Path | None = None) -> dict[str, Any]:
    """Generate, ingest and search; returns a JSON-ready dict (see :func:`format_report`).

    ``store_dir`` keeps the store in that directory instead of a temporary one; a later run
    with the same items, seed and session size finds it complete and reuses it instead of
    ingesting again (a million turns take about 12 minutes to ingest). With the bundled
    embedder (``embedder`` None), the first search is also timed in fresh processes: once
    without the index snapshot (``memkern.retrieval.snapshot``) and once with it.
    """
    from memkern import __version__
    from memkern.errors import InvalidInputError

    if items < 1 or queries < 1:
        raise InvalidInputError(f"items and queries must be at least 1, not {items} and {queries}")
    generated_at = time.perf_counter()
    corpus = generate(items, queries, seed, turns_per_session)
    generate_s = time.perf_counter() - generated_at
    wanted = {"items": corpus.n_turns, "sessions": len(corpus.sessions), "seed": seed,
              "turns_per_session": turns_per_session}

    with _bench_directory(store_dir, workdir) as directory:
        built = _built(directory, wanted)
        if built is None:
            built = {**wanted, **_ingest(directory, corpus, seed, embedder, progress)}
            (directory / BUILT_NOTE).write_text(json.dumps(built), encoding="utf-8")
        fresh = _fresh_first_searches(directory / STORE_FILE, corpus.questions[0].text,
                                      _slot_question(corpus)) if embedder is None else None
        result = _timed_searches(directory / STORE_FILE, corpus, embedder, progress)
        store_files = {name: size for name, size in _store_files(directory).items() if name != BUILT_NOTE}
        snapshot_bytes = sum(f.stat().st_size for d in directory.iterdir() if d.is_dir() for f in d.rglob("*")
                             if f.is_file())
    store_bytes = sum(store_files.values())

    total = built["items"]
    ingest_s = built["ingest_s"]
    return {
        "items": total,
        "sessions": built["sessions"],
        "queries": len(corpus.questions),
        "ingest_s": ingest_s,
        "ingest_turns_per_s": round(total / ingest_s, 1) if ingest_s > 0 else None,
        "reused_store": built.get("reused", False),
        **result,
        "fresh_process": fresh,
        "store_bytes": store_bytes,
        "store_bytes_per_item": round(store_bytes / total, 1),
        "store_files": store_files,
        #: Files of the saved index copies beside the store (``memkern.retrieval.snapshot``).
        "index_snapshot_bytes": snapshot_bytes,
        "config": {
            "seed": seed, "turns_per_session": turns_per_session, "top_k": TOP_K, "embedder": result.pop("embedder"),
            "dim": result.pop("dim"), "memkern_version": __version__, "python": platform.python_version(),
            "platform": platform.platform(), "generate_s": round(generate_s, 2),
        },
    }


@contextmanager
def _bench_directory(store_dir: str | Path | None, workdir: str | Path | None) -> Iterator[Path]:
    """``store_dir`` (created if missing), or a temporary directory removed afterwards."""
    if store_dir is not None:
        directory = Path(store_dir)
        directory.mkdir(parents=True, exist_ok=True)
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="memkern-scale-", dir=workdir) as tmp:
        yield Path(tmp)


def _built(directory: Path, wanted: dict[str, Any]) -> dict[str, Any] | None:
    """What a complete earlier ingestion in ``directory`` recorded, if it built this corpus.

    A store without the note (an interrupted ingestion) or built from another corpus is refused
    rather than silently measured or overwritten."""
    from memkern.errors import InvalidInputError

    note, store = directory / BUILT_NOTE, directory / STORE_FILE
    if not store.exists():
        return None
    built = json.loads(note.read_text(encoding="utf-8")) if note.is_file() else {}
    if any(built.get(key) != value for key, value in wanted.items()):
        raise InvalidInputError(f"{store} exists but holds no complete ingestion of this corpus ({wanted}); "
                                "remove it or give another directory")
    return {**built, "reused": True}


def _ingest(directory: Path, corpus: Corpus, seed: int, embedder: Any, progress: ProgressCallback | None
            ) -> dict[str, Any]:
    """Ingest ``corpus`` into a new cube "scale" through the public API, one add per session."""
    from memkern.mos import MemOS

    with MemOS(directory / STORE_FILE, embedder=embedder) as mos:
        cube = mos.create_cube("scale", owner="bench", description=f"bench scale, seed {seed}")
        total, done, ingest_s = corpus.n_turns, 0, 0.0
        if progress:
            progress("ingest", 0, total)
        for session_id, messages in corpus.sessions:
            started = time.perf_counter()
            cube.add(messages=messages, session_id=session_id)
            ingest_s += time.perf_counter() - started
            done += len(messages)
            if progress:
                progress("ingest", done, total)
    return {"ingest_s": round(ingest_s, 2)}


def _timed_searches(path: Path, corpus: Corpus, embedder: Any, progress: ProgressCallback | None
                    ) -> dict[str, Any]:
    """The first search of this process (it loads the index), then every recipe on every question."""
    from memkern.mos import MemOS

    with MemOS(path, embedder=embedder) as mos:
        cube = mos.get_cube("scale")
        started = time.perf_counter()
        cube.search(corpus.questions[0].text, top_k=TOP_K)  # loads the index: timed apart
        first_search_s = time.perf_counter() - started
        # Past ANN_MIN_ROWS rows the first search starts building the approximate dense index in the
        # background (searches scan exactly meanwhile); the timed searches run once it is ready.
        started = time.perf_counter()
        mos.kernel.indexes.wait_approximate()
        approximate_s = time.perf_counter() - started

        for question in corpus.warmup:  # one-off costs out of the timing (WARMUP_QUESTIONS)
            cube.search(question.text, top_k=TOP_K)
        searches: dict[str, dict[str, Any]] = {}
        found: list[str] = []  # the best hit of each hybrid question, whose links are timed below
        for recipe in RECIPES_TIMED:
            label = f"search {recipe}"
            seconds: list[float] = []
            hits_at_k = 0
            if progress:
                progress(label, 0, len(corpus.questions))
            for position, question in enumerate(corpus.questions, 1):
                started = time.perf_counter()
                hits = cube.search(question.text, top_k=TOP_K, config=recipe)
                seconds.append(time.perf_counter() - started)
                if any(question.target in hit.memory.provenance.message_ids for hit in hits):
                    hits_at_k += 1
                if recipe == "hybrid" and hits:
                    found.append(hits[0].id)
                if progress:
                    progress(label, position, len(corpus.questions))
            searches[recipe] = {
                "search_ms_p50": _percentile_ms(seconds, 50),
                "search_ms_p95": _percentile_ms(seconds, 95),
                "search_ms_max": round(max(seconds) * 1000, 2),
                "search_ms_mean": round(sum(seconds) / len(seconds) * 1000, 2),
                f"hit_at_{TOP_K}": round(hits_at_k / len(corpus.questions), 3),
            }
        organisation = _timed_organisation(cube, found[:LINKS_TIMED])
        memory = resident_mb()
        hybrid = searches["hybrid"]
        return {
            "organisation": organisation,
            "first_search_ms": round(first_search_s * 1000, 1),
            "approximate_index_wait_s": round(approximate_s, 1),
            "search_ms_p50": hybrid["search_ms_p50"],
            "search_ms_p95": hybrid["search_ms_p95"],
            "search_ms_max": hybrid["search_ms_max"],
            "memory": memory,
            "recipes": searches,
            "embedder": mos.embedder.name,
            "dim": mos.embedder.dim,
        }


def _timed_organisation(cube: Any, memory_ids: list[str]) -> dict[str, Any]:
    """``links`` (every kind) of the best hit of the first questions, and the timeline at each level
    (``memkern.organize``): what a look at how memories are organised costs at this size."""
    seconds, linked = [], 0
    for memory_id in memory_ids:
        started = time.perf_counter()
        linked += len(cube.links(memory_id))
        seconds.append(time.perf_counter() - started)
    timeline_ms = {}
    for level in ("month", "week", "day", "session"):
        started = time.perf_counter()
        cube.timeline(level, limit=TIMELINE_NODES)
        timeline_ms[level] = round((time.perf_counter() - started) * 1000, 1)
    return {"links_ms_p50": _percentile_ms(seconds, 50), "links_ms_p95": _percentile_ms(seconds, 95),
            "links_per_memory": round(linked / len(seconds), 1) if seconds else None,
            "links_timed": len(seconds), "timeline_ms": timeline_ms, "timeline_nodes": TIMELINE_NODES}


def _slot_question(corpus: Corpus) -> str:
    """The first question asking about a profile slot (a pet, a job...), else the first question."""
    from memkern.organize.profile import asked_slot

    return next((q.text for q in corpus.questions if asked_slot(q.text) is not None), corpus.questions[0].text)


def _fresh_first_searches(path: Path, question: str, slot_question: str) -> dict[str, Any]:
    """The first search of a new process on the closed store: ``cold`` without the index
    snapshot (removed first: the process loads every row from the store, then saves one),
    ``warm`` with the snapshot the cold process left."""
    from memkern.retrieval import snapshot
    from memkern.store.sqlite import SQLiteStore

    store = SQLiteStore(path)
    try:
        with store.index_cache(store.get_cube("scale").id) as directory:
            if directory is not None:
                snapshot.remove(directory)
    finally:
        store.close()
    return {"cold": _probe(path, question, slot_question), "warm": _probe(path, question, slot_question)}


def _probe(path: Path, question: str, slot_question: str) -> dict[str, Any]:
    command = [sys.executable, "-c", "import sys; from memkern.bench.scale import probe_first_search; "
               "probe_first_search(sys.argv[1], sys.argv[2], sys.argv[3])", str(path), question, slot_question]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the first-search probe failed ({done.returncode}): {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def probe_first_search(path: str, question: str, slot_question: str) -> None:
    """Run by :func:`_probe` in a new process: open the store, time the first search and the
    snapshot save it starts, then the first question about a profile slot, then wait for the
    approximate dense index; print the numbers and this process's memory as one JSON line. Closing
    saves the copy again with the profile and the graph, which the next process maps."""
    from memkern.mos import MemOS

    with MemOS(path, llm=None) as mos:
        cube = mos.get_cube("scale")
        started = time.perf_counter()
        cube.search(question, top_k=TOP_K)
        first_search_s = time.perf_counter() - started
        memory = resident_mb()
        started = time.perf_counter()
        mos.kernel.indexes.wait_saves()
        save_s = time.perf_counter() - started
        started = time.perf_counter()
        cube.search(slot_question, top_k=TOP_K)
        slot_question_s = time.perf_counter() - started
        started = time.perf_counter()
        mos.kernel.indexes.wait_approximate()  # built here (past 50,000 rows), saved at close for the next
        approximate_s = time.perf_counter() - started
    print(json.dumps({"first_search_ms": round(first_search_s * 1000, 1), "memory": memory,
                      "snapshot_save_wait_ms": round(save_s * 1000, 1),
                      "first_slot_question_ms": round(slot_question_s * 1000, 1),
                      "approximate_index_wait_s": round(approximate_s, 1)}))


def format_report(result: dict[str, Any]) -> str:
    """A plain-text report of a :func:`run_scale` result."""
    config = result.get("config", {})
    lines = [
        (f"memkern bench scale: {result['items']:,} turns in {result['sessions']:,} sessions, "
         f"{result['queries']} questions, top {config.get('top_k', TOP_K)}"),
        (f"embedder {config.get('embedder')} ({config.get('dim')} dimensions), memkern "
         f"{config.get('memkern_version')}, python {config.get('python')}, seed {config.get('seed')}"),
        "",
        (f"ingest          {result['ingest_turns_per_s']:,.0f} turns/s ({result['ingest_s']:,.1f} s, one add per "
         "session" + (", by an earlier run: store reused" if result.get("reused_store") else "") + ")"),
        (f"store size      {result['store_bytes'] / 1e6:,.1f} MB ({result['store_bytes_per_item']:,.0f} bytes/turn: "
         + ", ".join(f"{name} {size / 1e6:,.1f} MB" for name, size in result.get("store_files", {}).items())
         + ")"),
        f"index snapshot  {result.get('index_snapshot_bytes', 0) / 1e6:,.1f} MB (the saved index copy, beside the store)",
        f"first search    {result['first_search_ms']:,.1f} ms (loads the index)",
        f"approximate dense index ready {result.get('approximate_index_wait_s', 0):,.1f} s after it "
        f"(built in the background past {ANN_MIN_ROWS:,} rows; searches below are timed after)",
        *_fresh_lines(result.get("fresh_process")),
        (f"process memory  {result['memory']['rss_mb']} MB resident after the searches (peak "
         f"{result['memory']['peak_rss_mb']} MB)") if "memory" in result else "",
        "",
        f"{'search (end to end)':<20}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'mean ms':>9}{'hit@' + str(TOP_K):>9}",
    ]
    for recipe, timing in result.get("recipes", {}).items():
        hit = timing.get(f"hit_at_{TOP_K}")
        lines.append(f"{recipe:<20}{timing['search_ms_p50']:>9.1f}{timing['search_ms_p95']:>9.1f}"
                     f"{timing['search_ms_max']:>9.1f}{timing['search_ms_mean']:>9.1f}"
                     f"{'-' if hit is None else f'{hit:.3f}':>9}")
    organisation = result.get("organisation")
    if organisation and organisation.get("links_timed"):
        lines += ["", (f"links           p50 {organisation['links_ms_p50']:.1f} ms, p95 {organisation['links_ms_p95']:.1f} ms"
                       f" ({organisation['links_per_memory']} links per memory, best hits of "
                       f"{organisation['links_timed']} questions)"),
                  (f"timeline        {organisation['timeline_nodes']} nodes: " + ", ".join(
                      f"{level} {ms:,.1f} ms" for level, ms in organisation["timeline_ms"].items()))]
    return "\n".join(lines)


def _fresh_lines(fresh: dict[str, Any] | None) -> list[str]:
    """The report's lines on the first search of a new process, with and without the snapshot."""
    if not fresh:
        return []
    lines = []
    for name, said in (("cold", "no index snapshot: loads every row"), ("warm", "with the index snapshot")):
        probe = fresh[name]
        lines.append(f"  new process, {name}: {probe['first_search_ms']:,.1f} ms ({said}); "
                     f"{probe['memory']['rss_mb']} MB resident (peak {probe['memory']['peak_rss_mb']} MB); "
                     f"first slot question {probe['first_slot_question_ms']:,.1f} ms; "
                     f"approximate index ready {probe['approximate_index_wait_s']:,.1f} s after that")
    return lines
