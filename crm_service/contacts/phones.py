"""Phone normalisation: every spelling of one number maps to one E.164 string.

Rule (documented in the README): keep the digits; a leading ``+`` or ``00`` means the
number is international already; a leading ``0`` (a trunk prefix) means a national
number of the default region (Indonesia, +62, the market of the source system); any
other digit string is taken as international without its ``+``. So
``+62 812-3456-7890``, ``0812-3456-7890`` and ``6281234567890`` are all
``+6281234567890``. The result must be a possible number for its country.
"""

from __future__ import annotations

import re

import phonenumbers

DEFAULT_REGION = "ID"
_NON_DIGITS = re.compile(r"\D")


def normalize_phone(raw: str, default_region: str = DEFAULT_REGION) -> str | None:
    text = raw.strip()
    digits = _NON_DIGITS.sub("", text)
    if not digits or len(digits) > 17:
        return None
    if text.startswith("+"):
        candidate = "+" + digits
    elif digits.startswith("00"):
        candidate = "+" + digits[2:]
    elif digits.startswith("0"):
        country_code = phonenumbers.country_code_for_region(default_region)
        candidate = f"+{country_code}{digits[1:]}"
    else:
        candidate = "+" + digits
    try:
        number = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
