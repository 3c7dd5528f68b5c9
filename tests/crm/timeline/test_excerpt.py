from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import regex
from hypothesis import given
from hypothesis import strategies as st

from crm_service.timeline.excerpt import (
    MAX_EXCERPT_CHARS,
    MAX_MESSAGE_CHARS,
    ChatMessage,
    build_excerpt,
    clean,
    format_line,
    truncate,
)

T0 = datetime(2026, 11, 27, 21, 5, 29, 123456, tzinfo=UTC)
PREFIX = "[2026-11-27 21:05 UTC] Budi: "  # 29 characters

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 7 code points
FLAG_ID = "\U0001f1ee\U0001f1e9"  # regional indicators I + D
WAVE_DARK = "\U0001f44b\U0001f3fe"  # waving hand + skin tone
E_ACUTE = "e\u0301"  # e + combining acute accent


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def cluster_boundaries(text: str) -> set[int]:
    return {0} | {match.end() for match in regex.finditer(r"\X", text)}


def test_lines_read_oldest_first_with_the_newest_last() -> None:
    messages = [
        ChatMessage("Budi", "third", at(2)),
        ChatMessage("Agent", "second", at(1)),
        ChatMessage("Budi", "first", at(0)),
    ]
    assert build_excerpt(messages) == (
        "[2026-11-27 21:05 UTC] Budi: first\n"
        "[2026-11-27 21:06 UTC] Agent: second\n"
        "[2026-11-27 21:07 UTC] Budi: third"
    )


def test_line_time_is_printed_in_utc_to_the_minute() -> None:
    jakarta = timezone(timedelta(hours=7))
    sent = datetime(2026, 11, 28, 4, 5, 59, tzinfo=jakarta)
    assert format_line(ChatMessage("Budi", "hi", sent)) == "[2026-11-27 21:05 UTC] Budi: hi"


def test_no_messages_make_an_empty_excerpt() -> None:
    assert build_excerpt([]) == ""


def test_a_line_that_fits_is_kept_unchanged() -> None:
    text = "x" * (MAX_MESSAGE_CHARS - len(PREFIX))
    assert format_line(ChatMessage("Budi", text, T0)) == PREFIX + text


def test_a_long_message_is_cut_to_300_characters_ending_in_an_ellipsis() -> None:
    line = format_line(ChatMessage("Budi", "y" * 5_000, T0))
    assert line == PREFIX + "y" * (MAX_MESSAGE_CHARS - len(PREFIX) - 1) + "…"
    assert len(line) == MAX_MESSAGE_CHARS


def test_many_messages_keep_the_newest_that_fit_in_2000_characters() -> None:
    # Every line is cut to 300: six lines and their five newlines make 1,805; a seventh
    # would make 2,106.
    messages = [
        ChatMessage("Budi", f"{minute:02d}" + "z" * 400, at(minute)) for minute in range(50)
    ]
    lines = build_excerpt(messages).split("\n")
    assert [line[len(PREFIX) : len(PREFIX) + 2] for line in lines] == [
        "44",
        "45",
        "46",
        "47",
        "48",
        "49",
    ]


def test_excerpt_never_exceeds_2000_characters() -> None:
    messages = [ChatMessage("B" * 255, "w" * 10_000, at(minute)) for minute in range(100)]
    excerpt = build_excerpt(messages)
    assert len(excerpt) <= MAX_EXCERPT_CHARS
    assert all(len(line) <= MAX_MESSAGE_CHARS for line in excerpt.split("\n"))


def test_short_messages_that_fit_are_all_kept() -> None:
    messages = [ChatMessage("Budi", f"m{minute}", at(minute)) for minute in range(40)]
    lines = build_excerpt(messages).split("\n")
    assert len(lines) == 40
    assert lines[0].endswith("Budi: m0")
    assert lines[-1].endswith("Budi: m39")


def test_a_cut_never_splits_a_zwj_family() -> None:
    # 29 + 7k <= 299 keeps 38 families (295 characters); a plain slice at 299 would
    # end inside the 39th.
    line = format_line(ChatMessage("Budi", FAMILY * 100, T0))
    assert line == PREFIX + FAMILY * 38 + "…"


def test_a_cut_never_splits_a_flag() -> None:
    line = format_line(ChatMessage("Budi", "x" + FLAG_ID * 200, T0))
    assert line == PREFIX + "x" + FLAG_ID * 134 + "…"


def test_a_cut_never_separates_a_skin_tone_from_its_emoji() -> None:
    line = format_line(ChatMessage("Budi", "x" + WAVE_DARK * 200, T0))
    assert line == PREFIX + "x" + WAVE_DARK * 134 + "…"


def test_a_cut_never_separates_a_combining_accent_from_its_letter() -> None:
    line = format_line(ChatMessage("Budi", "x" + E_ACUTE * 200, T0))
    assert line == PREFIX + "x" + E_ACUTE * 134 + "…"


def test_a_cluster_longer_than_the_limit_is_dropped_whole() -> None:
    assert truncate("a" + "\u0301" * 50, 10) == "…"


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400), st.integers(2, 320))
def test_truncation_fits_the_limit_and_ends_on_a_cluster_boundary(text: str, limit: int) -> None:
    cut = truncate(text, limit)
    assert len(cut) <= limit
    if cut != text:
        kept = cut.removesuffix("…")
        assert cut.endswith("…")
        assert text.startswith(kept)
        assert len(kept) in cluster_boundaries(text)


def test_clean_turns_line_breaks_and_tabs_into_single_spaces() -> None:
    assert clean("  hello\r\n\tworld \u2028 again ") == "hello world again"


def test_clean_drops_control_and_bidi_override_characters() -> None:
    assert clean("pay\x00\x1b[31m\u202eltd\u202c now\x7f") == "pay[31mltd now"


def test_clean_keeps_emoji_joiners_and_variation_selectors() -> None:
    assert clean(f"{FAMILY} \u2764\ufe0f") == f"{FAMILY} \u2764\ufe0f"
