"""The hub's pattern index answers exactly what a regex scan over every pattern answered."""

from __future__ import annotations

import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from wskit.hub import InProcessHub, PatternIndex, compile_pattern

# Segments chosen to hit the edge cases: wildcards, a literal `**` or `a*` (not
# last, or not whole), an empty segment, and names that only differ slightly.
SEGMENTS = ["a", "b", "ab", "*", "**", "a*", "", "x.y"]


def join(segments: list[str]) -> str:
    return ".".join(segments)


class Sub:
    def __init__(self, name: str):
        self.name = name
        self.got: list = []

    def deliver(self, topic, event):
        self.got.append(topic)

    def __repr__(self) -> str:
        return self.name


class RegexScanHub:
    """What InProcessHub did before the index: every pattern's regex tried on every publish."""

    def __init__(self) -> None:
        self.topics: dict[str, dict] = {}
        self.patterns: dict[str, tuple[re.Pattern[str], dict]] = {}

    def subscribe(self, topic, sub):
        self.topics.setdefault(topic, {})[sub] = None

    def unsubscribe(self, topic, sub):
        members = self.topics.get(topic)
        if members is not None:
            members.pop(sub, None)
            if not members:
                del self.topics[topic]

    def subscribe_pattern(self, pattern, sub):
        entry = self.patterns.get(pattern)
        if entry is None:
            entry = self.patterns[pattern] = (compile_pattern(pattern), {})
        entry[1][sub] = None

    def unsubscribe_pattern(self, pattern, sub):
        entry = self.patterns.get(pattern)
        if entry is not None:
            entry[1].pop(sub, None)
            if not entry[1]:
                del self.patterns[pattern]

    def subscribers(self, topic):
        members = dict(self.topics.get(topic, {}))
        for regex, pattern_members in self.patterns.values():
            if regex.match(topic):
                members.update(pattern_members)
        return list(members)


names = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=5).map(join)


@settings(max_examples=400, deadline=None)
@given(patterns=st.lists(names, max_size=12), topics=st.lists(names, min_size=1, max_size=12))
def test_index_matches_what_the_regexes_match(patterns, topics):
    index = PatternIndex()
    for pattern in patterns:
        index.add(pattern)
    for topic in topics:
        expected = [p for p in dict.fromkeys(patterns) if compile_pattern(p).match(topic)]
        assert [entry.pattern for entry in index.matching(topic)] == expected, topic


operations = st.lists(
    st.tuples(st.sampled_from(["subscribe", "unsubscribe", "subscribe_pattern", "unsubscribe_pattern"]),
              names, st.integers(0, 4)),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops=operations, topics=st.lists(names, min_size=1, max_size=8))
def test_hub_subscribers_same_as_the_regex_scan_in_the_same_order(ops, topics):
    subs = [Sub(f"s{i}") for i in range(5)]
    hub, reference = InProcessHub(), RegexScanHub()
    for op, name, who in ops:
        getattr(hub, op)(name, subs[who])
        getattr(reference, op)(name, subs[who])
    for topic in topics + [name for _, name, _ in ops]:
        assert hub.subscribers(topic) == reference.subscribers(topic), topic
    for sub in subs:
        hub.unsubscribe_all(sub)
    assert hub.topics() == [] and len(hub._patterns) == 0
    assert hub._patterns._root.empty()  # unsubscribing pruned every trie node


def test_many_random_patterns_and_topics_fixed_seed():
    rng = random.Random(20240611)
    words = ["fx", "eq", "EURUSD", "GBPUSD", "ticks", "news", "*", "**", "", "a*"]

    def name() -> str:
        return join([rng.choice(words) for _ in range(rng.randint(1, 6))])

    patterns = list(dict.fromkeys(name() for _ in range(3000)))
    index = PatternIndex()
    for pattern in patterns:
        index.add(pattern)
    compiled = [(p, compile_pattern(p)) for p in patterns]
    for _ in range(2000):
        topic = name().replace("*", "x") if rng.random() < 0.8 else name()
        assert [e.pattern for e in index.matching(topic)] == [p for p, r in compiled if r.match(topic)]
    for pattern in patterns[::2]:
        index.remove(pattern)
    compiled = compiled[1::2]
    for _ in range(500):
        topic = name()
        assert [e.pattern for e in index.matching(topic)] == [p for p, r in compiled if r.match(topic)]


def test_documented_pattern_examples():
    hub = InProcessHub()
    one, more, exact = Sub("one"), Sub("more"), Sub("exact")
    hub.subscribe_pattern("ticks.*", one)
    hub.subscribe_pattern("ticks.**", more)
    hub.subscribe("ticks.EURUSD", exact)
    hub.subscribe_pattern("ticks.*", exact)  # also a pattern: still hears each publish once
    assert hub.subscribers("ticks.EURUSD") == [exact, one, more]
    assert hub.subscribers("ticks.fx.EURUSD") == [more]
    assert hub.subscribers("ticks") == [] and hub.subscribers("ticks.") == []
    assert hub.publish("ticks.EURUSD", {None: 1}) == 3 and exact.got == ["ticks.EURUSD"]


def test_a_publish_looks_at_the_topics_segments_not_at_every_pattern():
    hub = InProcessHub()
    subs = [Sub(f"s{i}") for i in range(10_000)]
    for i, sub in enumerate(subs):
        hub.subscribe_pattern(f"pubsub.room{i}.*", sub)
        hub.subscribe_pattern(f"pubsub.room{i}.**", sub)
    visited = []
    root = hub._patterns._root
    # The trie below "pubsub" holds 10,000 literal children; a lookup takes one of them.
    assert len(root.children["pubsub"].children) == 10_000
    original = dict.get

    class CountingChildren(dict):
        def get(self, key, default=None):
            visited.append(key)
            return original(self, key, default)

    node = root.children["pubsub"]
    node.children = CountingChildren(node.children)
    assert hub.subscribers("pubsub.room7.x") == [subs[7]]
    assert visited == ["room7"]
