"""Personal data in memory text: detection (tags) and redaction (placeholders).

Simple, conservative patterns, run on every write:

- ``email``: ``name@domain.tld``;
- ``phone``: international (``+44 20 7946 0958``) or grouped national numbers
  (``(555) 123-4567``, ``555-123-4567``, ``555.123.4567``), 10 to 15 digits;
- ``card``: 13 to 19 digits, optionally grouped by spaces or dashes, passing the Luhn check;
- ``iban``: two letters, two check digits and up to 30 characters, passing the ISO 13616
  mod-97 check;
- ``account``: a run of 6 to 17 digits right after "account number", "acct no", "routing
  number" or "sort code";
- ``address``: a house number, one to three capitalised words and a street type
  ("221 Baker Street", "1600 Pennsylvania Ave").

A memory with findings is tagged ``pii:<kind>``; when the cube's policy says
``redact_pii: true`` each finding is replaced by ``[EMAIL]``, ``[PHONE]``, ``[CARD]``,
``[IBAN]``, ``[ACCOUNT]`` or ``[ADDRESS]`` before the text is stored or embedded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memkern.regexes import required_literals, required_literals_ignoring_case

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}"      # +44 20 7946 0958
    r"|\(\d{3}\)\s?\d{3}[\s.-]?\d{4}"                                              # (555) 123-4567
    r"|\d{3}[.-]\d{3}[.-]\d{4}"                                                    # 555-123-4567
    r"|\d{3}\s\d{3}\s\d{4}"                                                        # 555 123 4567
    r")(?!\w)"
)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_ACCOUNT = re.compile(
    r"\b(?:account|acct|routing|sort)\s*(?:number|num|no\.?|#|code)?\s*(?:is|:)?\s*((?:\d[ -]?){5,16}\d)\b",
    re.IGNORECASE,
)
_STREET_TYPES = (r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace"
                 r"|Parkway|Pkwy|Highway|Hwy|Square|Sq|Crescent|Close|Strasse|Straße")
_ADDRESS = re.compile(rf"\b\d{{1,5}}[A-Za-z]?\s+(?:[A-Z][a-z]+\.?\s+){{1,3}}(?:{_STREET_TYPES})\b\.?")

_DIGIT = re.compile(r"\d")
#: A piece of every match of the pattern it is named after, found several times faster (it
#: starts with a character class, where the patterns start with a lookbehind tried at every
#: character): a text without it is not scanned for that kind.
_CARD_HINT = re.compile(r"\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d")        # thirteen digits start with five
_PHONE_HINT = re.compile(r"\d\d\d|\+\d")                          # each shape holds both or one
_IBAN_HINT = re.compile(r"[A-Z][A-Z]\d\d")
_ACCOUNT_WORDS = required_literals_ignoring_case(_ACCOUNT)
_ADDRESS_WORDS = required_literals(_ADDRESS)

PLACEHOLDERS = {"email": "[EMAIL]", "phone": "[PHONE]", "card": "[CARD]", "iban": "[IBAN]",
                "account": "[ACCOUNT]", "address": "[ADDRESS]"}


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def find_pii(text: str) -> list[Finding]:
    """Non-overlapping findings, in text order (earlier kinds win an overlap)."""
    found: list[Finding] = []

    def free(start: int, end: int) -> bool:
        return all(end <= f.start or start >= f.end for f in found)

    def take(kind: str, start: int, end: int) -> None:
        if free(start, end):
            found.append(Finding(kind, start, end))

    if "@" in text:
        for m in _EMAIL.finditer(text):
            take("email", m.start(), m.end())
    if not _DIGIT.search(text):  # every other kind holds a digit
        return sorted(found, key=lambda f: f.start)
    for m in _IBAN.finditer(text) if _IBAN_HINT.search(text) else ():
        if iban_ok(m.group()):
            take("iban", m.start(), m.end())
    for m in _CARD.finditer(text) if _CARD_HINT.search(text) else ():
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 1:
            take("card", m.start(), m.end())
    lowered = text.lower()
    for m in _ACCOUNT.finditer(text) if any(word in lowered for word in _ACCOUNT_WORDS) else ():
        take("account", m.start(1), m.end(1))
    for m in _PHONE.finditer(text) if _PHONE_HINT.search(text) else ():
        digits = re.sub(r"\D", "", m.group())
        if 10 <= len(digits) <= 15:
            take("phone", m.start(), m.end())
    for m in _ADDRESS.finditer(text) if any(word in text for word in _ADDRESS_WORDS) else ():
        take("address", m.start(), m.end())
    return sorted(found, key=lambda f: f.start)


def pii_tags(findings: list[Finding]) -> list[str]:
    return [f"pii:{kind}" for kind in dict.fromkeys(f.kind for f in findings)]


def redact(text: str, findings: list[Finding] | None = None) -> str:
    """``text`` with every finding replaced by its placeholder."""
    findings = find_pii(text) if findings is None else findings
    out, last = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        out.append(text[last:f.start])
        out.append(PLACEHOLDERS[f.kind])
        last = f.end
    out.append(text[last:])
    return "".join(out)
