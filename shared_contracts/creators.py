"""Creator flags: who made a record when it was not a person."""

from enum import StrEnum


class CreatorFlag(StrEnum):
    BOT = "bot"
    AGENTIC_AI = "agentic_ai"


CREATOR_LABELS: dict[CreatorFlag, str] = {
    CreatorFlag.BOT: "Bot",
    CreatorFlag.AGENTIC_AI: "AI",
}


def parse_creator_flag(raw: object) -> CreatorFlag | None:
    """Case-insensitive parse; anything absent or unrecognised is ``None`` (RFC CDTC-S06 AC-3)."""
    if not isinstance(raw, str):
        return None
    try:
        return CreatorFlag(raw.strip().lower())
    except ValueError:
        return None


def creator_label(flag: CreatorFlag | str | None) -> str | None:
    if flag is None:
        return None
    return CREATOR_LABELS[CreatorFlag(flag)]
