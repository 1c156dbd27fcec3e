"""The guard memkern shipped before the layered one (issue 10; ``git show 08da610:memkern/governance/guard.py``).

Kept only as the baseline that ``memkern bench guard`` measures the current guard against in the
same run: strong/weak regular expressions over a normalised copy of the text (English only), a
text quarantined on one strong rule or two different weak ones. Not used by the write path.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass, field

#: Zero-width and bidirectional control characters used to hide text.
_HIDDEN_CHARS = re.compile("[\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"
                           "\u202a-\u202e\u2066-\u2069\u00ad\U000e0000-\U000e007f]")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")

_OVERRIDE_VERBS = r"(?:ignore|disregard|forget|override|overwrite|bypass|skip|drop|discard|abandon|neglect)"
_PRIOR = r"(?:all\s+|any\s+|the\s+|your\s+|of\s+|my\s+|these\s+|those\s+)*" \
         r"(?:previous|prior|preceding|above|earlier|former|original|initial|existing|system|safety|default|old)"
_RULES_WORDS = r"(?:instructions?|directions|prompts?|rules|directives?|guidelines|guardrails|constraints|context|messages?" \
               r"|programming|policies|policy|restrictions|commands|orders|training)"

#: (name, pattern) pairs; one strong match quarantines.
STRONG: list[tuple[str, re.Pattern[str]]] = [
    ("override_instructions", re.compile(
        rf"\b{_OVERRIDE_VERBS}\s+(?:\w+\s+){{0,3}}?{_PRIOR}\s+(?:\w+\s+)?{_RULES_WORDS}\b")),
    ("override_instructions", re.compile(
        rf"\b{_OVERRIDE_VERBS}\s+(?:all\s+|everything\s+)?(?:you\s+(?:were|have\s+been)\s+(?:told|taught|instructed))")),
    ("new_instructions", re.compile(
        r"\b(?:new|updated|real|actual|true|secret|hidden|override)\s+(?:system\s+)?(?:instructions?|directives?)"
        r"\s*(?::|for\s+(?:the\s+)?(?:ai|assistant|model|llm|agent)|follow)")),
    ("system_prompt", re.compile(
        r"\b(?:system|developer|hidden|initial|original)\s+(?:prompt|message|instructions)\b")),
    ("role_marker", re.compile(
        r"(?:<\|(?:im_start|im_end|system|user|assistant|endoftext)\|>|\[/?inst\]|<</?sys>>|<\s*/?\s*system\s*>"
        r"|^\s*#{2,}\s*(?:system|instruction|new instructions)\b|(?:^|\n)\s*(?:system|assistant)\s*:\s*(?:you|from|ignore|always|never|do)\b)")),
    ("persona_hijack", re.compile(
        r"\byou\s+are\s+(?:now|no\s+longer)\s+(?:an?\s+|the\s+|in\s+)?(?:\w+\s+){0,3}?"
        r"(?:ai|assistant|model|chatbot|bot|llm|gpt|dan|jailbroken|unrestricted|unfiltered|developer\s+mode|mode)\b")),
    ("persona_hijack", re.compile(
        r"\b(?:act|behave|respond|pretend|roleplay)\s+(?:as|like)\s+(?:an?\s+)?(?:\w+\s+){0,2}?"
        r"(?:unrestricted|unfiltered|jailbroken|uncensored|evil|dan)\b")),
    ("persona_hijack", re.compile(
        r"\b(?:pretend\s+(?:to\s+be|you\s+are)|roleplay\s+as|act\s+as|play\s+the\s+role\s+of)\s+(?:an?\s+)?(?:\w+\s+){0,2}?"
        r"(?:ai|assistant|chatbot|bot|llm|language\s+model)\b")),
    ("persona_hijack", re.compile(r"\b(?:developer|god|jailbreak|dan)\s+mode\s+(?:enabled|activated|on)\b")),
    ("tool_call", re.compile(
        r"[\"'](?:function_call|tool_calls?|tool_use|tool_name|function)[\"']\s*:"
        r"|<\s*/?\s*(?:tool_call|function_calls?|invoke|tool_use)\b"
        r"|[\"']name[\"']\s*:\s*[\"'][\w.-]+[\"']\s*,\s*[\"'](?:arguments|parameters|args|input)[\"']\s*:")),
    ("exfiltration", re.compile(
        r"\b(?:send|forward|email|post|upload|leak|exfiltrate|transmit)\s+(?:all\s+|the\s+|every\s+)?(?:\w+\s+){0,2}"
        r"(?:conversation|chat\s+history|memories|credentials|passwords?|api\s+keys?|user\s+data|data)\s+"
        r"(?:\w+\s+){0,2}to\s+(?:https?://|\S+@\S+|(?:this|the\s+following|my)\s+(?:url|address|server|endpoint))")),
    ("model_directive", re.compile(
        r"\b(?:note|message|attention|instruction|important)\s+(?:to|for)\s+(?:the\s+)?(?:ai|assistant|model|llm"
        r"|language\s+model|chatbot|agent|bot)\b")),
    ("model_directive", re.compile(
        r"\b(?:ai|assistant|model|llm|chatbot|agent)\s*[,:]\s*(?:you\s+must|always|never|from\s+now\s+on|ignore"
        r"|do\s+not|don't|when\s+(?:asked|the\s+user))")),
    ("model_directive", re.compile(
        r"(?:^|[\s(\[])(?:attention|hey|dear|note|psst|ok|okay)\s*,?\s*(?:ai|assistant|model|llm|chatbot|agent|bot)\s*[:,!]")),
    ("do_not_tell", re.compile(
        r"\b(?:never|do\s+not|don't)\s+(?:mention|reveal|disclose|acknowledge)\s+(?:this|these|the)\s+"
        r"(?:instructions?|notes?|messages?|rules?|prompts?|directives?)\b")),
    ("do_not_tell", re.compile(
        r"\b(?:do\s+not|don't|never)\s+(?:tell|reveal|mention|inform|disclose\s+to|let)\s+(?:this\s+to\s+)?"
        r"(?:the\s+)?(?:user|human|operator)\b")),
]

#: (name, pattern) pairs; two different weak rules quarantine.
WEAK: list[tuple[str, re.Pattern[str]]] = [
    ("from_now_on", re.compile(r"\b(?:from\s+now\s+on|henceforth|for\s+all\s+future\s+(?:answers|responses|queries))\b")),
    ("you_are_now", re.compile(r"\byou\s+are\s+now\b|\byour\s+new\s+(?:role|name|task|goal|persona|purpose)\b")),
    ("addressing_model", re.compile(
        r"\b(?:as\s+an?\s+(?:ai|language\s+model)|the\s+(?:ai|assistant|model|llm)\s+(?:must|should|will)"
        r"|(?:ai|assistant|model|llm|chatbot)\s+(?:must|should)\s+(?:always|never))\b")),
    ("answer_directive", re.compile(
        r"\b(?:always|only|must)\s+(?:answer|respond|reply|say|output|recommend)\b"
        r"|\bwhen(?:ever)?\s+(?:asked|the\s+user\s+asks|someone\s+asks)\b|\brespond\s+(?:only\s+)?with\b")),
    ("secrecy", re.compile(r"\b(?:secretly|covertly|without\s+(?:the\s+user|them|anyone)\s+knowing|do\s+not\s+reveal)\b")),
    ("credentials", re.compile(r"\b(?:password|api\s+key|secret\s+key|access\s+token|credentials|private\s+key"
                               r"|one-time\s+codes?|otp|verification\s+codes?|pin\s+codes?)s?\b")),
    ("url", re.compile(r"https?://\S+")),
    ("imperative_override", re.compile(rf"\b{_OVERRIDE_VERBS}\s+(?:everything|all|that|this|the\s+above)\b")),
]


@dataclass
class Verdict:
    """Why a text is (or is not) suspicious: ``quarantine`` when any strong reason or two weak ones."""

    strong: list[str] = field(default_factory=list)
    weak: list[str] = field(default_factory=list)

    @property
    def quarantine(self) -> bool:
        return bool(self.strong) or len(set(self.weak)) >= 2

    @property
    def reasons(self) -> list[str]:
        return list(dict.fromkeys(self.strong + self.weak))


_SPACED = re.compile(r"\b(?:[a-z] ){3,}[a-z]\b")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_LEET_WORD = re.compile(r"\b(?=[a-z0-9@$]*[a-z])(?=[a-z0-9@$]*[0-9@$])[a-z0-9@$]+\b")


def normalise(text: str) -> str:
    """Lower case, NFKC (full-width letters), hidden characters removed, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = _HIDDEN_CHARS.sub("", text)
    return re.sub(r"[ \t\r\f\v]+", " ", text).lower()


def deobfuscate(norm: str) -> str:
    """A normalised text with letter-spacing ("i g n o r e") and leetspeak ("1gn0re") undone."""
    norm = _SPACED.sub(lambda m: m.group().replace(" ", ""), norm)
    return _LEET_WORD.sub(lambda m: m.group().translate(_LEET), norm)


def _decoded_blobs(text: str) -> list[str]:
    """Text hidden in base64 runs (printable decodings only)."""
    out = []
    for m in _BASE64.finditer(text):
        blob = m.group()
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=False)
        except (binascii.Error, ValueError):
            continue
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if decoded and sum(ch.isprintable() or ch.isspace() for ch in decoded) / len(decoded) > 0.95:
            out.append(decoded)
    return out


def _scan(text: str, verdict: Verdict, *, prefix: str = "") -> None:
    norm = normalise(text)
    plain = deobfuscate(norm)
    variants = (norm,) if plain == norm else (norm, plain)
    for name, pattern in STRONG:
        if any(pattern.search(v) for v in variants):
            verdict.strong.append(prefix + name)
    for name, pattern in WEAK:
        if any(pattern.search(v) for v in variants):
            verdict.weak.append(prefix + name)


def check(text: str) -> Verdict:
    """The guard's verdict on one memory text."""
    verdict = Verdict()
    if _HIDDEN_CHARS.search(text):
        # Hidden characters alone are a weak sign (emoji sequences use U+200D); with anything
        # else suspicious, or when they hide letters, they quarantine.
        hidden = _HIDDEN_CHARS.findall(text)
        if any(ch != "\u200d" for ch in hidden) or re.search("[a-z]\u200d[a-z]", text, re.IGNORECASE):
            verdict.strong.append("hidden_characters")
        else:
            verdict.weak.append("hidden_characters")
    for comment in _HTML_COMMENT.findall(text):
        verdict.strong.append("html_comment")
        _scan(comment, verdict, prefix="comment:")
    _scan(text, verdict)
    for decoded in _decoded_blobs(text):
        inner = Verdict()
        _scan(decoded, inner)
        if inner.strong or inner.weak:
            verdict.strong.append("base64_instructions")
    return verdict
