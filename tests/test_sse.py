"""The SSE decoder: WHATWG line and field rules, [DONE], and any split of the bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from routmy_async._streaming._sse import SSEDecoder, WireEvent


def decode_all(*reads: bytes) -> tuple[list[WireEvent], SSEDecoder]:
    decoder = SSEDecoder()
    events: list[WireEvent] = []
    for read in reads:
        events.extend(decoder.feed(read))
    events.extend(decoder.close())
    return events, decoder


def test_data_lines_join_with_lf_and_one_space_is_dropped():
    """Two data lines of one event are joined with LF; only one leading space is removed."""
    events, _ = decode_all(b"data: first\ndata:  second\n\n")
    assert [e.data for e in events] == [b"first\n second"]


def test_crlf_cr_and_lf_all_end_lines():
    """CRLF, a lone CR and a lone LF each end a line."""
    events, _ = decode_all(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n")
    assert [e.data for e in events] == [b"a", b"b", b"c"]


def test_cr_at_end_of_read_and_lf_at_start_of_next_are_one_break():
    """A CRLF split across two reads does not produce an extra blank line."""
    events, _ = decode_all(b"data: a\r", b"\ndata: b\r\n\r\n")
    assert [e.data for e in events] == [b"a\nb"]


def test_comments_are_skipped_and_counted():
    """Lines starting with ':' (keep-alives) produce no event."""
    events, decoder = decode_all(b": OPENROUTER PROCESSING\n\ndata: x\n\n: again\n\n")
    assert [e.data for e in events] == [b"x"]
    assert decoder.comments == 2


def test_event_id_and_retry_fields():
    """event, id and retry are parsed; the id persists for later events."""
    events, decoder = decode_all(b"event: ping\nid: 7\nretry: 1500\ndata: {}\n\ndata: y\n\n")
    assert events[0] == WireEvent(b"{}", "ping", "7", 1500)
    assert events[1].event == "message" and events[1].id == "7"
    assert decoder.last_event_id == "7" and decoder.retry == 1500


def test_invalid_retry_and_nul_id_are_ignored():
    """A non-numeric retry and an id holding NUL are ignored, as the spec says."""
    events, decoder = decode_all(b"retry: soon\nid: a\0b\ndata: z\n\n")
    assert events[0].retry is None and events[0].id is None
    assert decoder.retry is None


def test_field_without_colon_and_unknown_fields():
    """'data' alone is an empty data line; unknown field names are ignored."""
    events, _ = decode_all(b"data\nfoo: bar\ndata: x\n\n")
    assert [e.data for e in events] == [b"\nx"]


def test_blank_line_without_data_dispatches_nothing():
    """An event with no data lines is not dispatched and its type is reset."""
    events, _ = decode_all(b"event: lonely\n\ndata: a\n\n")
    assert events == [WireEvent(b"a")]


def test_done_ends_the_stream_and_nothing_after_is_yielded():
    """data: [DONE] sets done; events after it in the same read are dropped."""
    events, decoder = decode_all(b"data: 1\n\ndata: [DONE]\n\ndata: 2\n\n", b"data: 3\n\n")
    assert [e.data for e in events] == [b"1"]
    assert decoder.done


def test_event_without_final_blank_line_is_discarded_at_eof():
    """An incomplete event at EOF is not dispatched; has_pending reports it first."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: partial\n") == []
    assert decoder.has_pending
    assert decoder.close() == []
    assert not decoder.has_pending


def test_utf8_split_across_reads_survives():
    """A multi-byte character split between reads is reassembled (bytes are kept whole)."""
    payload = "data: héllo ☃ 🎉\n\n".encode()
    cut = payload.index("☃".encode()) + 1
    events, _ = decode_all(payload[:cut], payload[cut:])
    assert events[0].text == "héllo ☃ 🎉"


def test_u2028_is_not_a_line_break():
    """U+2028 LINE SEPARATOR inside data stays in the data."""
    events, _ = decode_all("data: a\u2028b\n\n".encode())
    assert events[0].text == "a\u2028b"


def test_many_mib_line_in_small_reads():
    """A single 8 MiB data line arriving in 64 KiB reads decodes as one event."""
    big = b"A" * (8 * 1024 * 1024)
    stream = b"data: " + big + b"\n\n"
    decoder = SSEDecoder()
    events = []
    for start in range(0, len(stream), 65536):
        events.extend(decoder.feed(stream[start : start + 65536]))
    assert len(events) == 1 and events[0].data == big


def test_repr_and_equality():
    """Events compare by value and show their type in repr."""
    event = WireEvent(b"x", "message")
    assert event == WireEvent(b"x")
    assert event != WireEvent(b"y")
    assert event.__eq__(object()) is NotImplemented
    assert "message" in repr(event)


REFERENCE = (
    b": OPENROUTER PROCESSING\r\n\r\n"
    b'data: {"a": "\xc3\xa9\xe2\x98\x83"}\r\n\r\n'
    b"event: custom\rid: 42\rdata: line1\rdata: line2\r\r"
    b"data:no-space\n\n"
    b"retry: 10\ndata: after\n\n"
    b"data: [DONE]\n\n"
    b"data: ignored\n\n"
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(REFERENCE)), max_size=40))
def test_any_split_gives_the_same_events(cuts):
    """However the bytes are cut into reads, the decoded events are the same."""
    expected, _ = decode_all(REFERENCE)
    points = sorted(set(cuts))
    reads = [REFERENCE[a:b] for a, b in zip([0, *points], [*points, len(REFERENCE)], strict=True)]
    got, decoder = decode_all(*reads)
    assert got == expected
    assert decoder.done
    assert [e.data for e in expected][:2] == ['{"a": "é☃"}'.encode(), b"line1\nline2"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n")
        ).map(lambda s: s.encode()),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from([b"\n", b"\r", b"\r\n"]),
    st.data(),
)
def test_generated_streams_roundtrip(payloads, newline, data):
    """Arbitrary UTF-8 payloads framed with any line ending come back exactly, at any split."""
    stream = b"".join(b"data: " + p + newline + newline for p in payloads)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    points = sorted(set(cuts))
    reads = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    events, _ = decode_all(*reads)
    if b"[DONE]" in payloads:
        payloads = payloads[: payloads.index(b"[DONE]")]
    # An event whose data is empty carries nothing and is not dispatched.
    expected = [p for p in payloads if p]
    assert [e.data for e in events] == expected


EVENT_PIECES = st.sampled_from(
    [
        b'data: {"a": 1}\n\n',
        b"data: \xe2\x98\x83 snow\n\n",
        b": keep-alive\n\n",
        b"data: line one\ndata: line two\n\n",
        b"event: ping\ndata: typed\n\n",
        b"id: 9\ndata: with id\n\n",
        b"data:no-space\n\n",
        b"data: \n\n",
        b"\n",
        b"retry: 5\n\n",
    ]
)


def reference_events(stream: bytes) -> list[WireEvent]:
    """Decode line by line, one byte per read: the slow path, as the reference."""
    return decode_all(*[stream[i : i + 1] for i in range(len(stream))])[0]


@settings(max_examples=300, deadline=None)
@given(st.lists(EVENT_PIECES, min_size=1, max_size=12), st.booleans(), st.data())
def test_lf_fast_path_matches_the_line_rules(pieces, with_done, data):
    """The LF block splitter gives exactly what the line-by-line rules give, at any split."""
    stream = b"".join(pieces) + (b"data: [DONE]\n\ndata: after\n\n" if with_done else b"")
    expected = reference_events(stream)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6))
    points = sorted(set(cuts))
    reads = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    got, decoder = decode_all(*reads)
    assert got == expected
    assert decoder.done == with_done
