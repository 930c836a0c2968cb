"""The offline engine: sentence splitting, TextRank, keywords, VADER sentiment."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accessai.ai.engines.base import AIEngine, AnalysisResult, SummaryResult
from accessai.ai.engines.local import LocalEngine
from accessai.ai.engines.sentiment import SentimentScorer, sentiment_label
from accessai.ai.engines.text import (
    STOPWORDS,
    count_words,
    extract_keywords,
    extractive_summary,
    pagerank,
    parse,
    reading_time_seconds,
    sentence_scores,
    split_sentences,
    summary_size,
)

SOLAR = (
    "Solar power is growing faster than any other source of electricity. In 2023, the world "
    "added more solar capacity than ever before, and prices for panels fell again. Dr. Maria "
    "Lopez, an energy economist, said the trend surprised even optimists. Cheap solar panels "
    "are now being installed on rooftops, farms and parking lots across the U.S. and Europe. "
    "Batteries are also getting cheaper, which helps solve the problem of storing energy for "
    "the night. However, grid operators warn that old transmission lines cannot carry all the "
    "new power. Building new lines takes years because of permits and local opposition. Some "
    "experts worry that these delays could slow the energy transition. Others argue that "
    "smarter grids and home batteries can fill the gap. Either way, solar power has become a "
    "central part of the plan to cut carbon emissions."
)
POSITIVE = (
    "I bought this laptop last month and I absolutely love it. The screen is bright and "
    "beautiful, the keyboard feels great, and the battery easily lasts a full day. Customer "
    "support was friendly and helpful. Highly recommended!"
)
NEGATIVE = (
    "This was the worst hotel I have ever stayed in. The room was dirty, the bed was broken "
    "and the staff were rude. The food made my husband sick. I regret wasting our money."
)
NEUTRAL = (
    "The meeting is scheduled for Tuesday at 10 a.m. in room 204. "
    "The agenda includes the quarterly budget and the office layout."
)


def chosen_indexes(summary: str, sentences: list[str]) -> list[int] | None:
    """Which sentences, in order, the summary is made of; None if it is not made of them."""
    chosen: list[int] = []
    rest = summary
    for index, sentence in enumerate(sentences):
        if rest.startswith(sentence) and rest[len(sentence) :][:1] in ("", " "):
            chosen.append(index)
            rest = rest[len(sentence) + 1 :]
    return chosen if not rest else None


# --- sentences -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Dr. Smith went to Washington. He arrived at 3.14 p.m. on Monday.",
            ["Dr. Smith went to Washington.", "He arrived at 3.14 p.m. on Monday."],
        ),
        (
            "The U.S. economy grew 2.5% last year. Analysts, e.g. at the Fed, were surprised.",
            ["The U.S. economy grew 2.5% last year.", "Analysts, e.g. at the Fed, were surprised."],
        ),
        (
            "Mr. and Mrs. Jones live at No. 5 Main St. in the U.K. They like tea.",
            ["Mr. and Mrs. Jones live at No. 5 Main St. in the U.K.", "They like tea."],
        ),
        (
            "Wait... what happened? I don't know... Really!",
            ["Wait... what happened?", "I don't know...", "Really!"],
        ),
        (
            'She said, "This is great." Then she left.',
            ['She said, "This is great."', "Then she left."],
        ),
        ("Pi is about 3.14159 and e is 2.718.", ["Pi is about 3.14159 and e is 2.718."]),
        ("  no final stop here  ", ["no final stop here"]),
        ("", []),
        (" \n\t ", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


_PIECES = [*"abcXYZ .!?\"'()-,;:\n0123", "Dr.", "e.g.", "U.S.", "...", "3.14", "Mr. ", "\u2019"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40).map("".join))
def test_sentences_are_verbatim_in_order_and_cover_the_text(text: str) -> None:
    sentences = split_sentences(text)
    cursor = 0
    for sentence in sentences:
        assert sentence
        assert sentence == sentence.strip()
        found = text.find(sentence, cursor)
        assert found >= 0
        assert not text[cursor:found].strip()  # only whitespace between sentences
        cursor = found + len(sentence)
    assert not text[cursor:].strip()


def test_word_count_keeps_contractions_decimals_and_abbreviations_whole() -> None:
    assert count_words("Don't stop: the U.S. rate is 3.14, a well-known figure.") == 10
    assert count_words("   ") == 0


# --- summary ---------------------------------------------------------------


def test_summary_is_input_sentences_in_order_and_shorter() -> None:
    sentences = split_sentences(SOLAR)
    assert len(sentences) == 10
    summary = extractive_summary(parse(SOLAR))
    chosen = chosen_indexes(summary, sentences)
    assert chosen is not None, summary
    assert chosen == sorted(chosen)
    assert len(chosen) == summary_size(10) == 3
    assert len(summary) < len(SOLAR)


def test_summary_picks_the_central_sentence() -> None:
    # The second sentence shares words with the first and the third; the last is off topic.
    text = (
        "Cats sleep most of the day. "
        "Cats and dogs are popular pets that sleep, play and need daily care. "
        "Dogs play outside and need daily walks. "
        "The stock market closed higher on Friday."
    )
    assert extractive_summary(parse(text)) == (
        "Cats and dogs are popular pets that sleep, play and need daily care."
    )


def test_sentence_scores_rank_the_hub_sentence_first() -> None:
    scores = sentence_scores(parse("Red apples. Red apples and green pears. Green pears."))
    assert scores[1] == max(scores)
    assert scores[0] == pytest.approx(scores[2])


def test_longer_input_gives_a_longer_summary() -> None:
    sentences = split_sentences(SOLAR)
    short = " ".join(sentences[:3])
    short_chosen = chosen_indexes(extractive_summary(parse(short)), sentences[:3])
    long_chosen = chosen_indexes(extractive_summary(parse(SOLAR)), sentences)
    assert short_chosen is not None
    assert long_chosen is not None
    assert len(short_chosen) == 1
    assert len(long_chosen) == 3


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, 0), (1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2), (8, 3), (12, 4), (30, 10)],
)
def test_summary_size_is_about_a_third(count: int, expected: int) -> None:
    assert summary_size(count) == expected


def test_summary_size_is_always_fewer_than_all_sentences() -> None:
    for count in range(2, 200):
        assert 1 <= summary_size(count) < count


@pytest.mark.parametrize(
    "text", ["Dr. Smith arrived at 3.14 p.m. on Monday.", "  Dr. Smith arrived at 3.14 p.m.  \n"]
)
def test_one_sentence_summarizes_to_itself(text: str) -> None:
    assert extractive_summary(parse(text)) == text.strip()


def test_empty_text_summarizes_to_nothing() -> None:
    assert extractive_summary(parse("   ")) == ""


_WORDS = ["cat", "dog", "market", "river", "stone", "green", "storm", "garden", "bread", "music"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(_WORDS), min_size=1, max_size=8).map(
            lambda words: " ".join(words).capitalize() + "."
        ),
        min_size=1,
        max_size=15,
    )
)
def test_summary_of_any_text_is_a_shorter_ordered_selection(sentences: list[str]) -> None:
    text = " ".join(sentences)
    assert split_sentences(text) == sentences
    summary = extractive_summary(parse(text))
    chosen = chosen_indexes(summary, sentences)
    assert chosen is not None
    assert len(chosen) == summary_size(len(sentences))
    if len(sentences) >= 2:
        assert len(summary) < len(text)


# --- pagerank --------------------------------------------------------------


def test_pagerank_scores_a_star_centre_highest_and_sums_to_one() -> None:
    star = [{1: 1.0, 2: 1.0, 3: 1.0}, {0: 1.0}, {0: 1.0}, {0: 1.0}]
    scores = pagerank(star)
    assert sum(scores) == pytest.approx(1.0)
    assert scores[0] > scores[1]
    assert scores[1] == pytest.approx(scores[2]) == pytest.approx(scores[3])


def test_pagerank_without_edges_is_uniform_and_follows_personalization() -> None:
    assert pagerank([{}, {}, {}]) == pytest.approx([1 / 3] * 3)
    assert pagerank([{}, {}], personalization=[3.0, 1.0]) == pytest.approx([0.75, 0.25])
    assert pagerank([]) == []


# --- analysis --------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "seconds"), [(0, 0), (1, 1), (119, 30), (238, 60), (239, 61), (476, 120)]
)
def test_reading_time_at_238_words_a_minute(words: int, seconds: int) -> None:
    assert reading_time_seconds(words) == seconds


@pytest.mark.parametrize(
    ("score", "label"),
    [(0.05, "positive"), (0.9, "positive"), (0.0499, "neutral"), (0.0, "neutral"),
     (-0.0499, "neutral"), (-0.05, "negative"), (-1.0, "negative")],
)  # fmt: skip
def test_sentiment_label_thresholds(score: float, label: str) -> None:
    assert sentiment_label(score) == label


def test_sentiment_is_the_mean_of_sentence_scores() -> None:
    scorer = SentimentScorer()
    good, flat = "What a wonderful, happy day!", "The train leaves at noon."
    assert scorer.sentence_score(good) > 0.5
    assert scorer.sentence_score(flat) == 0.0
    assert scorer.score([good, flat]) == round(scorer.sentence_score(good) / 2, 4)
    assert scorer.score([]) == 0.0


def test_keywords_come_from_the_text_without_stopwords() -> None:
    found = extract_keywords(parse(SOLAR))
    assert 1 <= len(found) <= 6
    assert len({keyword.lower() for keyword in found}) == len(found)
    for keyword in found:
        assert keyword.lower() in SOLAR.lower()
        assert keyword.lower() not in STOPWORDS
    # A phrase repeated in the text is kept whole, and its words are not repeated alone.
    assert "solar power" in found
    assert "solar" not in found
    assert "power" not in found
    assert "energy" in found


def test_keywords_keep_names_capitalised_and_respect_the_limit() -> None:
    text = (
        "NASA launched a rocket from Florida. The rocket carried instruments built by NASA "
        "engineers. Officials at NASA said the rocket performed well."
    )
    found = extract_keywords(parse(text), limit=3)
    assert len(found) == 3
    assert "NASA" in found
    assert "rocket" in found
    assert extract_keywords(parse(text), limit=0) == []
    assert extract_keywords(parse("The and of it."), limit=5) == []


# --- the engine ------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> LocalEngine:
    return LocalEngine()


def test_engine_identity(engine: LocalEngine) -> None:
    as_protocol: AIEngine = engine
    assert as_protocol.name == "local"
    assert engine.model == "local-textrank-vader-1"


async def test_engine_summarize(engine: LocalEngine) -> None:
    result = await engine.summarize(SOLAR)
    assert isinstance(result, SummaryResult)
    assert result.model == "local-textrank-vader-1"
    assert result.summary == extractive_summary(parse(SOLAR))
    assert chosen_indexes(result.summary, split_sentences(SOLAR)) is not None


@pytest.mark.parametrize(
    ("text", "label"), [(POSITIVE, "positive"), (NEGATIVE, "negative"), (NEUTRAL, "neutral")]
)
async def test_engine_analyze_sentiment(engine: LocalEngine, text: str, label: str) -> None:
    result = await engine.analyze(text)
    assert result.sentiment_label == label
    assert -1.0 <= result.sentiment_score <= 1.0
    if label == "positive":
        assert result.sentiment_score >= 0.5
    elif label == "negative":
        assert result.sentiment_score <= -0.5
    else:
        assert result.sentiment_score == 0.0


async def test_engine_analyze_counts(engine: LocalEngine) -> None:
    result = await engine.analyze(NEUTRAL)
    assert isinstance(result, AnalysisResult)
    assert result.model == "local-textrank-vader-1"
    # "10", "a.m" and "204" count as words; "a.m." does not end the first sentence.
    assert result.word_count == 22
    assert result.sentence_count == 2
    assert result.reading_time_seconds == 6
    assert result.keywords
    assert all(keyword.lower() in NEUTRAL.lower() for keyword in result.keywords)


async def test_engine_analyze_empty_text(engine: LocalEngine) -> None:
    result = await engine.analyze("  ")
    assert (result.word_count, result.sentence_count, result.reading_time_seconds) == (0, 0, 0)
    assert (result.sentiment_label, result.sentiment_score, result.keywords) == ("neutral", 0.0, [])


async def test_engine_work_runs_off_the_event_loop_thread() -> None:
    seen: list[int] = []

    class Recording(LocalEngine):
        def summarize_sync(self, text: str) -> SummaryResult:
            seen.append(threading.get_ident())
            return super().summarize_sync(text)

        def analyze_sync(self, text: str) -> AnalysisResult:
            seen.append(threading.get_ident())
            return super().analyze_sync(text)

    engine = Recording()
    await engine.summarize(POSITIVE)
    await engine.analyze(POSITIVE)
    await engine.aclose()
    assert len(seen) == 2
    assert threading.get_ident() not in seen
