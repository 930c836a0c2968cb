"""Pure text functions behind the local engine: sentences, words and TextRank.

Everything here is deterministic and does no I/O, so it is tested on its own.
Sentence boundaries come from pysbd (rule-based: abbreviations, decimals,
ellipses, quotes), stems from the Snowball English stemmer, and both the
summary and the keywords use TextRank (Mihalcea & Tarau, 2004): a graph of
sentences (or words) scored with PageRank.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pysbd
import snowballstemmer

# A word: letters or digits joined by inner apostrophes, dots or hyphens, so
# "don't", "3.14", "U.S" and "well-known" each count once.
_APOSTROPHE = "\u2019"  # the typographic apostrophe, as in "don\u2019t"
_WORD_RE = re.compile(r"\w+(?:['" + _APOSTROPHE + r".\-]\w+)*")
_HAS_WORD_RE = re.compile(r"\w")

# Silent reading speed of adult English readers for non-fiction
# (Brysbaert 2019, a meta-analysis of 190 studies).
WORDS_PER_MINUTE = 238

DEFAULT_KEYWORD_LIMIT = 6
# How many following content words a word is linked to in the keyword graph.
_KEYWORD_WINDOW = 3
_MAX_PHRASE_WORDS = 3


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


# English function words and reporting verbs: never keywords, and left out of
# sentence similarity. A short list on purpose: broad lists (1,000+ words)
# also drop real topic words such as "system", "research" or "world".
STOPWORDS: frozenset[str] = _word_set(
    """
    a about above across after afterwards again against all almost alone along already also
    although always am among amongst an and another any anybody anyhow anyone anything anyway
    anywhere are around as at away be became because become becomes becoming been before
    beforehand behind being below beside besides between beyond both but by can cannot could
    did do does doing done down due during each either else elsewhere enough especially etc even
    ever every everybody everyone everything everywhere except few for former formerly from
    further furthermore get gets getting give given gives go goes going gone got had has have
    having he hence her here hereby herein hers herself him himself his how however i ie if in
    indeed instead into is it its itself just least less let lets like likely made make makes
    many may maybe me meanwhile might mine more moreover most mostly much must my myself namely
    neither never nevertheless next no nobody none nonetheless noone nor not nothing now nowhere
    of off often oh ok okay on once one ones only onto or other others otherwise ought our ours
    ourselves out over own per perhaps please put quite rather really said same say saying says
    see seem seemed seeming seems several shall she should since so some somebody somehow someone
    something sometime sometimes somewhat somewhere still such than that the their theirs them
    themselves then thence there thereafter thereby therefore therein thereupon these they this
    those though through throughout thru thus to together too toward towards under unless until
    unto up upon us use used uses using very via vs was we well were what whatever when whence
    whenever where whereafter whereas whereby wherein whereupon wherever whether which while whither
    who whoever whole whom whose why will with within without would yes yet you your yours yourself
    yourselves e.g i.e a.m p.m mr mrs ms dr st jr sr inc ltd co
    two three four five six seven eight nine ten first second third last
    """
)
_CONTRACTION_SUFFIXES = ("n't", "'re", "'ve", "'ll", "'d", "'m")


@dataclass(frozen=True, slots=True)
class Token:
    """One word of the text, with where it is and how it is compared."""

    text: str  # as written, possessive "'s" removed
    start: int
    end: int
    stem: str
    content: bool  # a candidate keyword: not a stopword, has 2+ letters
    sentence_initial: bool


@dataclass(frozen=True, slots=True)
class Document:
    """A text cut into sentences (verbatim slices of it) and their words."""

    text: str
    sentences: list[str]
    tokens: list[list[Token]]  # one list per sentence

    @property
    def word_count(self) -> int:
        return sum(len(tokens) for tokens in self.tokens)


# Snowball stemmer objects keep per-word state, so each thread gets its own.
_stemmers = threading.local()


@functools.lru_cache(maxsize=50_000)
def stem(word: str) -> str:
    """The Snowball English stem of a lower-case word ("batteries" -> "batteri")."""
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        stemmer = _stemmers.english = snowballstemmer.stemmer("english")
    return str(stemmer.stemWord(word))


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence in ``text``, without surrounding whitespace.

    Every non-blank part of the text lands in exactly one span, even where the
    segmenter drops a fragment; a span of punctuation only ("!!") is joined to
    its neighbour so every sentence has a word when the text has one.
    """
    # pysbd keeps the text being segmented on the instance: a new one per call
    # keeps this safe to run from several threads.
    segmenter = pysbd.Segmenter(language="en", clean=False)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for segment in segmenter.segment(text):
        piece = str(segment).strip()
        if not piece:
            continue
        start = text.find(piece, cursor)
        if start < 0:
            continue  # not verbatim: the text it covers is picked up as a gap below
        _add_span(text, cursor, start, spans)
        _add_span(text, start, start + len(piece), spans)
        cursor = start + len(piece)
    _add_span(text, cursor, len(text), spans)
    return spans


def _add_span(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    chunk = text[start:end]
    stripped = chunk.strip()
    if not stripped:
        return
    start += len(chunk) - len(chunk.lstrip())
    end = start + len(stripped)
    if spans and (
        not _HAS_WORD_RE.search(stripped) or not _HAS_WORD_RE.search(text[slice(*spans[-1])])
    ):
        spans[-1] = (spans[-1][0], end)
    else:
        spans.append((start, end))


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, each a verbatim slice of it, in order."""
    return [text[start:end] for start, end in sentence_spans(text)]


def count_words(text: str) -> int:
    return len(_WORD_RE.findall(text))


def reading_time_seconds(word_count: int) -> int:
    """Seconds an adult needs to read ``word_count`` words silently; at least 1 for any text."""
    if word_count <= 0:
        return 0
    return max(1, math.ceil(word_count * 60 / WORDS_PER_MINUTE))


def _is_stopword(lower: str) -> bool:
    if lower in STOPWORDS:
        return True
    # "don't", "we're", "they'll": contractions of function words.
    normalized = lower.replace(_APOSTROPHE, "'")
    return any(normalized.endswith(suffix) for suffix in _CONTRACTION_SUFFIXES)


def _tokens(text: str, start: int, end: int) -> list[Token]:
    tokens: list[Token] = []
    for match in _WORD_RE.finditer(text, start, end):
        word = match.group()
        if word[-2:].lower() in ("'s", _APOSTROPHE + "s"):
            word = word[:-2]
        lower = word.lower()
        letters = sum(char.isalpha() for char in lower)
        tokens.append(
            Token(
                text=word,
                start=match.start(),
                end=match.start() + len(word),
                stem=stem(lower),
                content=letters >= 2 and not _is_stopword(lower),
                sentence_initial=not tokens,
            )
        )
    return tokens


def parse(text: str) -> Document:
    """Cut ``text`` into sentences and words (the one pass both engine calls share)."""
    spans = sentence_spans(text)
    return Document(
        text=text,
        sentences=[text[start:end] for start, end in spans],
        tokens=[_tokens(text, start, end) for start, end in spans],
    )


def pagerank(
    graph: Sequence[Mapping[int, float]],
    *,
    damping: float = 0.85,
    tolerance: float = 1e-6,
    max_iterations: int = 200,
    personalization: Sequence[float] | None = None,
) -> list[float]:
    """Weighted PageRank by power iteration; scores sum to 1.

    ``graph[j]`` maps each neighbour ``i`` of node ``j`` to the weight of the
    edge j -> i. The random jumps (and the score of nodes without edges, the
    usual treatment of dangling nodes) land on nodes in proportion to
    ``personalization``, evenly when it is not given: an edgeless graph then
    scores all nodes alike.
    """
    size = len(graph)
    if size == 0:
        return []
    total = sum(personalization) if personalization is not None else 0.0
    if personalization is None or total <= 0:
        jump = [1.0 / size] * size
    else:
        jump = [weight / total for weight in personalization]
    out_weight = [sum(edges.values()) for edges in graph]
    scores = [1.0 / size] * size
    for _ in range(max_iterations):
        dangling = sum(score for score, out in zip(scores, out_weight, strict=True) if out <= 0)
        spread = 1.0 - damping + damping * dangling
        updated = [spread * weight for weight in jump]
        for node, edges in enumerate(graph):
            if out_weight[node] <= 0:
                continue
            share = damping * scores[node] / out_weight[node]
            for neighbour, weight in edges.items():
                updated[neighbour] += share * weight
        change = sum(abs(new - old) for new, old in zip(updated, scores, strict=True))
        scores = updated
        if change < tolerance:
            break
    return scores


def _ranked(scores: Sequence[float]) -> list[int]:
    """Indexes by descending score; ties (to 12 digits) go to the earlier index."""
    return sorted(range(len(scores)), key=lambda index: (-round(scores[index], 12), index))


def sentence_scores(document: Document) -> list[float]:
    """TextRank centrality of each sentence.

    Similarity is the original TextRank one: shared content-word stems over
    the log of the two sentence lengths (long sentences do not win by length).
    """
    bags = [[token.stem for token in tokens if token.content] for tokens in document.tokens]
    stems = [frozenset(bag) for bag in bags]
    graph: list[dict[int, float]] = [{} for _ in bags]
    for i in range(len(bags)):
        for j in range(i + 1, len(bags)):
            overlap = len(stems[i] & stems[j])
            if not overlap:
                continue
            norm = max(1.0, math.log(len(bags[i])) + math.log(len(bags[j])))
            graph[i][j] = graph[j][i] = overlap / norm
    return pagerank(graph)


def summary_size(sentence_count: int) -> int:
    """About a third of the sentences: at least one, and fewer than all from two on."""
    if sentence_count <= 1:
        return sentence_count
    return min(sentence_count - 1, max(1, math.floor(sentence_count / 3 + 0.5)))


def extractive_summary(document: Document) -> str:
    """The most central sentences, verbatim and in their original order."""
    count = len(document.sentences)
    if count <= 1:
        return document.sentences[0] if document.sentences else ""
    chosen = sorted(_ranked(sentence_scores(document))[: summary_size(count)])
    return " ".join(document.sentences[index] for index in chosen)


def extract_keywords(document: Document, limit: int = DEFAULT_KEYWORD_LIMIT) -> list[str]:
    """Up to ``limit`` keywords or short key phrases, as they are written in the text.

    TextRank for keywords: content words (by stem) are linked when they occur
    within a few words of each other in a sentence, and scored with PageRank.
    The top third of the words are candidates. Two or three of them that
    stand side by side in the text at least twice form a phrase ("solar
    power"), scored by the sum of its words; a word already inside a chosen
    phrase is not repeated on its own.
    """
    if limit <= 0:
        return []
    scores = _word_scores(document)
    if not scores:
        return []
    keep = max(limit, math.ceil(len(scores) / 3))
    top = set(sorted(scores, key=lambda stem: -round(scores[stem], 12))[:keep])

    display = _display_forms(document)
    spellings: dict[str, Counter[str]] = defaultdict(Counter)
    phrases: dict[tuple[str, ...], list[list[Token]]] = defaultdict(list)
    for tokens in document.tokens:
        for run in _adjacent_runs(document.text, tokens, top):
            for token in run:
                spellings[token.stem][token.text.lower()] += 1
            if 1 < len(run) <= _MAX_PHRASE_WORDS:
                phrases[tuple(token.stem for token in run)].append(run)

    candidates: list[tuple[float, str, tuple[str, ...]]] = []
    for key, runs in phrases.items():
        if len(runs) >= 2:
            written = " ".join(display[token.text.lower()] for token in runs[0])
            candidates.append((sum(scores[stem] for stem in key), written, key))
    for stem in top:
        # The stem's most frequent spelling, the first seen on a tie.
        lower = spellings[stem].most_common(1)[0][0]
        candidates.append((scores[stem], display[lower], (stem,)))
    candidates.sort(key=lambda candidate: (-round(candidate[0], 12), candidate[1]))

    chosen: list[str] = []
    covered: set[str] = set()
    for _, written, key in candidates:
        if covered.isdisjoint(key):
            chosen.append(written)
            covered.update(key)
            if len(chosen) == limit:
                break
    return chosen


def _word_scores(document: Document) -> dict[str, float]:
    """PositionRank of each content-word stem in its co-occurrence graph.

    PositionRank (Florescu & Caragea, 2017) is TextRank whose random jumps
    favour words that occur early and often: on short texts, where most words
    occur once, plain TextRank has little to go on and ranks by sentence
    length. Each occurrence adds 1/sqrt(position) rather than the paper's
    1/position, which on texts this short let the first sentence crowd out
    words repeated throughout.
    """
    content = [[token.stem for token in tokens if token.content] for tokens in document.tokens]
    index: dict[str, int] = {}
    prior: list[float] = []
    position = 0
    for stems in content:
        for stem in stems:
            position += 1
            node = index.setdefault(stem, len(index))
            if node == len(prior):
                prior.append(0.0)
            prior[node] += 1.0 / math.sqrt(position)
    graph: list[defaultdict[int, float]] = [defaultdict(float) for _ in index]
    for stems in content:
        for position, stem in enumerate(stems):
            for other in stems[position + 1 : position + _KEYWORD_WINDOW + 1]:
                a, b = index[stem], index[other]
                if a != b:
                    graph[a][b] += 1.0
                    graph[b][a] += 1.0
    ranks = pagerank(graph, personalization=prior)
    return {stem: ranks[node] for stem, node in index.items()}


def _adjacent_runs(text: str, tokens: Sequence[Token], top: set[str]) -> list[list[Token]]:
    """Maximal runs of top words separated by one plain space each.

    One plain space only, so a phrase joined with spaces is written in the
    text exactly like that.
    """
    runs: list[list[Token]] = []
    run: list[Token] = []
    for token in tokens:
        if not (token.content and token.stem in top):
            run = []
            continue
        if not run or text[run[-1].end : token.start] != " ":
            run = []
            runs.append(run)
        run.append(token)
    return runs


def _display_forms(document: Document) -> dict[str, str]:
    """How to write each word in a keyword: lower case, unless it is a name.

    A word counts as a name ("Lopez", "NASA") when it is capitalised every
    time and at least once away from the start of a sentence.
    """
    capitalised: dict[str, bool] = {}
    mid_sentence: dict[str, bool] = defaultdict(bool)
    written: dict[str, str] = {}
    for tokens in document.tokens:
        for token in tokens:
            lower = token.text.lower()
            written.setdefault(lower, token.text)
            capitalised[lower] = capitalised.get(lower, True) and token.text[:1].isupper()
            mid_sentence[lower] |= not token.sentence_initial
    return {
        lower: written[lower] if capitalised[lower] and mid_sentence[lower] else lower
        for lower in written
    }
