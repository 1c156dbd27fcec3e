"""Ingest and search speed at scale: ``memkern bench scale --items 100000 [--queries 200]``.

Synthetic but realistic conversations are generated from templates (people, places,
activities, objects, pets, jobs, foods, relative dates...; deterministic for a seed, with
millions of possible combinations), ingested into a fresh cube in a temporary store
through the public API (``cube.add(messages=..., session_id=...)``, one call per session
of about 20 turns), then searched with questions built from turns that were stored.

Search time is ``cube.search`` end to end (query embedding, lexical and dense search,
fusion, fetching the memories), measured per query after one untimed warm-up search
that loads the index (reported separately as ``first_search_ms``). The same questions
are timed with the hybrid, lexical-only and dense-only recipes; ``hit_at_10`` says how
often the turn a question was built from came back in the top 10, a sanity check rather
than a quality benchmark (many synthetic turns are alike).
"""

from __future__ import annotations

import platform
import random
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

#: ``progress(label, done, total)``, like :mod:`memkern.bench.locomo`'s: labels are "ingest" and
#: "search <recipe>"; one unit per turn ingested and per question searched.
ProgressCallback = Callable[[str, int, int], None]

RECIPES_TIMED = ("hybrid", "lexical", "dense")
TOP_K = 10

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
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
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
    for message_id, question, slots in rng.sample(statements, min(queries, len(statements))):
        corpus.questions.append(Question(question.format(**slots), message_id))
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


def run_scale(items: int = 100_000, queries: int = 200, seed: int = 7, progress: ProgressCallback | None = None,
              *, turns_per_session: int = 20, workdir: str | Path | None = None, embedder: Any = None
              ) -> dict[str, Any]:
    """Generate, ingest and search; returns a JSON-ready dict (see :func:`format_report`)."""
    from memkern import __version__
    from memkern.errors import InvalidInputError
    from memkern.mos import MemOS

    if items < 1 or queries < 1:
        raise InvalidInputError(f"items and queries must be at least 1, not {items} and {queries}")
    generated_at = time.perf_counter()
    corpus = generate(items, queries, seed, turns_per_session)
    generate_s = time.perf_counter() - generated_at

    with tempfile.TemporaryDirectory(prefix="memkern-scale-", dir=workdir) as tmp:
        directory = Path(tmp)
        with MemOS(directory / "scale.db", embedder=embedder) as mos:
            cube = mos.create_cube("scale", owner="bench", description=f"bench scale, seed {seed}")
            total = corpus.n_turns
            done = 0
            if progress:
                progress("ingest", 0, total)
            ingest_s = 0.0
            for session_id, messages in corpus.sessions:
                started = time.perf_counter()
                cube.add(messages=messages, session_id=session_id)
                ingest_s += time.perf_counter() - started
                done += len(messages)
                if progress:
                    progress("ingest", done, total)

            started = time.perf_counter()
            cube.search(corpus.questions[0].text, top_k=TOP_K)  # loads the index: timed apart
            first_search_s = time.perf_counter() - started

            searches: dict[str, dict[str, Any]] = {}
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
                    if progress:
                        progress(label, position, len(corpus.questions))
                searches[recipe] = {
                    "search_ms_p50": _percentile_ms(seconds, 50),
                    "search_ms_p95": _percentile_ms(seconds, 95),
                    "search_ms_max": round(max(seconds) * 1000, 2),
                    "search_ms_mean": round(sum(seconds) / len(seconds) * 1000, 2),
                    f"hit_at_{TOP_K}": round(hits_at_k / len(corpus.questions), 3),
                }
            embedder_name, dim = mos.embedder.name, mos.embedder.dim
            memory = resident_mb()
        store_files = _store_files(directory)
        store_bytes = sum(store_files.values())

    hybrid = searches["hybrid"]
    return {
        "items": total,
        "sessions": len(corpus.sessions),
        "queries": len(corpus.questions),
        "ingest_s": round(ingest_s, 2),
        "ingest_turns_per_s": round(total / ingest_s, 1) if ingest_s > 0 else None,
        "first_search_ms": round(first_search_s * 1000, 1),
        "search_ms_p50": hybrid["search_ms_p50"],
        "search_ms_p95": hybrid["search_ms_p95"],
        "search_ms_max": hybrid["search_ms_max"],
        "store_bytes": store_bytes,
        "store_bytes_per_item": round(store_bytes / total, 1),
        "store_files": store_files,
        "memory": memory,
        "recipes": searches,
        "config": {
            "seed": seed, "turns_per_session": turns_per_session, "top_k": TOP_K, "embedder": embedder_name,
            "dim": dim, "memkern_version": __version__, "python": platform.python_version(),
            "platform": platform.platform(), "generate_s": round(generate_s, 2),
        },
    }


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
         "session)"),
        (f"store size      {result['store_bytes'] / 1e6:,.1f} MB ({result['store_bytes_per_item']:,.0f} bytes/turn: "
         + ", ".join(f"{name} {size / 1e6:,.1f} MB" for name, size in result.get("store_files", {}).items())
         + ")"),
        f"first search    {result['first_search_ms']:,.1f} ms (loads the index)",
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
    return "\n".join(lines)
