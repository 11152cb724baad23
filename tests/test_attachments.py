"""What the SDK attaches to an answer stays outside its fields: typed to read, invisible to
equality, copies, pickles and encoding."""

from __future__ import annotations

import copy
import pickle

import msgspec

from routmy_async.types import ChatCompletion, Response
from routmy_async.types._base import (
    attach_answer,
    raw_json_of,
    set_output_parsed,
    set_transcript,
)

BODY = b'{"id": "c1", "choices": [], "brand_new": 1}'


def decoded() -> ChatCompletion:
    completion = msgspec.json.decode(BODY, type=ChatCompletion)
    attach_answer(completion, BODY, "req-1", status=200, headers={"x-request-id": "req-1"})
    return completion


def test_attachments_read_back_typed():
    """The bytes, the request id, the status and a transcript read back as they were kept."""
    completion = decoded()
    set_transcript(completion, [{"role": "user", "content": "hi"}])
    assert raw_json_of(completion) == BODY
    assert completion.request_id == "req-1" and completion.status_code == 200
    assert completion.transcript == [{"role": "user", "content": "hi"}]
    assert completion.brand_new == 1  # an undeclared field, read from the kept bytes
    response = Response(id="r1")
    assert response.output_parsed is None and response.transcript is None
    set_output_parsed(response, {"answer": 42})
    assert response.output_parsed == {"answer": 42}


def test_attachments_are_not_part_of_the_value():
    """Equality, copies, pickles and encoding see only the fields the server sent."""
    completion = decoded()
    set_transcript(completion, ["kept"])
    bare = msgspec.json.decode(BODY, type=ChatCompletion)
    assert completion == bare
    for twin in (
        copy.copy(completion),
        copy.deepcopy(completion),
        pickle.loads(pickle.dumps(completion)),
    ):
        assert twin == completion
        assert raw_json_of(twin) is None and twin.transcript is None and twin.request_id is None
    assert b"kept" not in completion.to_json() and "transcript" not in completion.to_dict()
    assert raw_json_of(object()) is None and raw_json_of(bare) is None
