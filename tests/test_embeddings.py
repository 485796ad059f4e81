"""OpenAI Embeddings (`POST /v1/embeddings`) on a real server, with openai-python (sync and async) and httpx."""

from __future__ import annotations

import base64
import json
import math
import struct
import time
from array import array

import httpx
import openai
import pytest
from helpers import async_openai_sdk, openai_sdk, plain_http, settled

from mockstream import Scenario

MODEL = "text-embedding-3-small"


def embed(client, knobs=None, **options):
    options.setdefault("model", MODEL)
    options.setdefault("input", "hello world")
    if knobs is not None:
        options["extra_body"] = {"mockstream": knobs}
    return client.embeddings.create(**options)


def raw(srv, body, **options) -> httpx.Response:
    with plain_http(**options) as http:
        return http.post(f"{srv.base_url}/embeddings", json=body)


def f32(values) -> list[float]:
    """The values as float32 (what the API carries)."""
    return list(array("f", values))


# ---------------------------------------------------------------- answers ---
@pytest.mark.parametrize("encoding", ["float", "base64", None], ids=["float", "base64", "default"])
def test_the_sdk_decodes_the_same_vector_in_every_encoding(srv, client, encoding):
    options = {} if encoding is None else {"encoding_format": encoding}
    answer = embed(client, input=["alpha", "beta"], **options)
    reference = embed(client, input=["alpha", "beta"], encoding_format="float")
    assert answer.object == "list" and answer.model == MODEL
    assert [d.index for d in answer.data] == [0, 1]
    vectors = [d.embedding for d in answer.data]
    if encoding == "base64":  # asked for by the user: the SDK hands the string back as it came
        vectors = [list(struct.unpack("<1536f", base64.b64decode(v))) for v in vectors]
    assert vectors == [d.embedding for d in reference.data]
    assert all(len(v) == 1536 for v in vectors)


def test_the_default_request_is_base64_on_the_wire(srv, client):
    embed(client)
    assert settled(srv)[-1]["body"]["encoding_format"] == "base64"  # openai-python asks for base64 itself


def test_vectors_are_unit_length_float32(srv, client):
    vector = embed(client, encoding_format="float").data[0].embedding
    assert vector == f32(vector)
    assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-5)


def test_same_input_same_vector_across_requests_and_batch_positions(srv, client):
    alone = embed(client, input="same text").data[0].embedding
    again = embed(client, input="same text").data[0].embedding
    batch = embed(client, input=["other", "x", "same text"]).data
    assert alone == again == batch[2].embedding
    assert batch[0].embedding != batch[1].embedding != batch[2].embedding


def test_the_seed_chooses_the_vectors(srv, client):
    one = embed(client, {"seed": 1}).data[0].embedding
    assert one == embed(client, {"seed": 1}).data[0].embedding
    assert one != embed(client, {"seed": 2}).data[0].embedding


@pytest.mark.parametrize(
    ("model", "dimensions", "size"),
    [
        ("text-embedding-3-small", None, 1536),
        ("text-embedding-3-large", None, 3072),
        ("text-embedding-ada-002", None, 1536),
        ("some-other-model", None, 1536),
        ("text-embedding-3-large", 256, 256),
        ("text-embedding-3-small", 1, 1),
    ],
)
def test_dimensions(srv, client, model, dimensions, size):
    options = {} if dimensions is None else {"dimensions": dimensions}
    vector = embed(client, model=model, **options).data[0].embedding
    assert len(vector) == size
    assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-5)


def test_a_list_is_answered_in_order_with_its_usage(srv, client):
    texts = [f"text number {i}" for i in range(10)]
    answer = embed(client, input=texts)
    singles = [embed(client, input=t).data[0].embedding for t in texts]
    assert [d.embedding for d in answer.data] == singles
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > 10


def test_token_id_inputs(srv, client):
    ids = embed(client, input=[1, 2, 3])
    assert ids.usage.prompt_tokens == 3 and len(ids.data) == 1
    arrays = embed(client, input=[[1, 2, 3], [4, 5]])
    assert arrays.usage.prompt_tokens == 5 and len(arrays.data) == 2
    assert arrays.data[0].embedding == ids.data[0].embedding
    assert embed(client, input="1 2 3").data[0].embedding == ids.data[0].embedding  # ids as their text


async def test_the_async_client(srv):
    async with async_openai_sdk(srv) as client:
        answer = await client.embeddings.create(model=MODEL, input=["a", "b"])
        floats = await client.embeddings.create(model=MODEL, input=["a", "b"], encoding_format="float")
    assert [d.embedding for d in answer.data] == [d.embedding for d in floats.data]
    assert len(answer.data) == 2


# ---------------------------------------------------------------- the wire ---
def test_base64_is_little_endian_float32_and_floats_read_back_exactly(srv):
    body = {"model": MODEL, "input": "wire", "dimensions": 8}
    floats = raw(srv, {**body, "encoding_format": "float"})
    packed = raw(srv, {**body, "encoding_format": "base64"})
    assert floats.status_code == packed.status_code == 200
    assert floats.headers["content-type"].startswith("application/json")
    assert floats.headers["x-request-id"].startswith("req_")
    vector = floats.json()["data"][0]["embedding"]
    data = base64.b64decode(packed.json()["data"][0]["embedding"])
    assert len(data) == 32
    assert list(struct.unpack("<8f", data)) == vector == f32(vector)
    assert packed.json()["usage"] == {"prompt_tokens": 1, "total_tokens": 1}
    assert set(packed.json()) == {"object", "data", "model", "usage"}


def test_the_journal_names_the_dialect(srv, client):
    embed(client)
    entry = settled(srv)[-1]
    assert entry["path"] == "/v1/embeddings" and entry["outcome"] == "completed" and entry["status"] == 200
    assert entry["scenario"] == "default"


def test_match_rules_see_the_first_input(make_server):
    scenarios = [
        Scenario.from_dict(
            {"name": "slowvec", "match": {"user": "^slow"}, "fault": {"kind": "http_error", "status": 503}}
        )
    ]
    srv = make_server(scenarios, speed=0)
    with openai_sdk(srv) as client:
        with pytest.raises(openai.InternalServerError):
            embed(client, input=["slow one", "fast"])
        assert len(embed(client, input=["fast", "slow one"]).data) == 2


# ---------------------------------------------------------------- validation ---
BAD = [
    ({"input": "x"}, "you must provide a model parameter", None),
    ({"model": MODEL}, "Missing required parameter: 'input'.", "input"),
    ({"model": MODEL, "input": ""}, "'$.input' is invalid.", None),
    ({"model": MODEL, "input": []}, "'$.input' is invalid.", None),
    ({"model": MODEL, "input": ["a", ""]}, "'$.input' is invalid.", None),
    ({"model": MODEL, "input": ["a"] * 2049}, "'$.input' is invalid.", None),
    ({"model": MODEL, "input": 5}, "'$.input' is invalid.", None),
    ({"model": MODEL, "input": ["a", 1]}, "'$.input' is invalid.", None),
    ({"model": MODEL, "input": [[1], []]}, "'$.input' is invalid.", None),
    ({"model": MODEL, "input": [True]}, "'$.input' is invalid.", None),
    ({"model": 3, "input": "x"}, "Invalid type for 'model'", "model"),
    ({"model": MODEL, "input": "x", "dimensions": 0}, "Expected a value >= 1, but got 0", "dimensions"),
    ({"model": MODEL, "input": "x", "dimensions": 1537}, "Must be less than or equal to 1536", "dimensions"),
    ({"model": MODEL, "input": "x", "dimensions": "8"}, "Invalid type for 'dimensions'", "dimensions"),
    (
        {"model": "text-embedding-ada-002", "input": "x", "dimensions": 8},
        "This model does not support specifying dimensions.",
        "dimensions",
    ),
    (
        {"model": MODEL, "input": "x", "encoding_format": "int8"},
        "Supported values are: 'float' and 'base64'",
        "encoding_format",
    ),
    ({"model": MODEL, "input": "x", "stream": True}, "Unrecognized request argument supplied: stream", "stream"),
]


@pytest.mark.parametrize(("body", "message", "param"), BAD, ids=[m[:30] + str(i) for i, (_, m, _) in enumerate(BAD)])
def test_bad_requests_get_the_apis_400(srv, body, message, param):
    response = raw(srv, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert message in error["message"] and error["type"] == "invalid_request_error" and error["param"] == param


def test_the_sdk_raises_bad_request(srv, client):
    with pytest.raises(openai.BadRequestError) as caught:
        embed(client, input="", encoding_format="float")
    assert caught.value.status_code == 400 and "'$.input' is invalid" in caught.value.message
    with pytest.raises(openai.BadRequestError):
        embed(client, model="text-embedding-ada-002", dimensions=8)


# ---------------------------------------------------------------- faults ---
def test_http_error_429_raises_rate_limit_error(srv, client):
    with pytest.raises(openai.RateLimitError) as caught:
        embed(client, {"fault": {"kind": "http_error", "status": 429}})
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert settled(srv)[-1]["outcome"] == "fault:http_error"


def test_slow_headers_trip_a_short_timeout(srv):
    with openai_sdk(srv, timeout=httpx.Timeout(5, read=0.2)) as client, pytest.raises(openai.APITimeoutError):
        embed(client, {"fault": {"kind": "slow_headers", "ms": 600}})
    with openai_sdk(srv, timeout=httpx.Timeout(5, read=3)) as client:
        assert embed(client, {"fault": {"kind": "slow_headers", "ms": 300}}).data


@pytest.mark.parametrize("kind", ["disconnect", "reset"])
def test_a_cut_connection_raises_api_connection_error(srv, client, kind):
    with pytest.raises(openai.APIConnectionError):
        embed(client, {"fault": {"kind": kind}})
    assert settled(srv)[-1]["outcome"] == f"fault:{kind}"


def test_stall_holds_the_answer(srv):
    with openai_sdk(srv, timeout=httpx.Timeout(5, read=0.2)) as client, pytest.raises(openai.APITimeoutError):
        embed(client, {"fault": {"kind": "stall"}})
    with openai_sdk(srv) as client:
        started = time.monotonic()
        assert embed(client, {"fault": {"kind": "stall", "ms": 300}}).data
        assert 0.28 <= time.monotonic() - started < 3


@pytest.mark.parametrize("kind", ["truncate", "malformed"])
def test_stream_cutting_faults_halve_the_body_as_on_every_non_streamed_answer(srv, client, kind):
    response = raw(srv, {"model": MODEL, "input": "x", "mockstream": {"fault": {"kind": kind}}})
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    with pytest.raises(json.JSONDecodeError):  # openai-python lets the decoder's error through, as for chat
        embed(client, {"fault": {"kind": kind}})


def test_error_event_answers_with_the_errors_status(srv, client):
    with pytest.raises(openai.InternalServerError) as caught:
        embed(client, {"fault": {"kind": "error_event", "message": "boom"}})
    assert caught.value.status_code == 500 and "boom" in caught.value.message
    assert settled(srv)[-1]["outcome"] == "fault:error_event"


def test_the_scenario_header_chooses_the_scenario(make_server):
    scenarios = [
        Scenario.from_dict(
            {"name": "limited", "match": {"user": "^never$"}, "fault": {"kind": "http_error", "status": 429}}
        )
    ]
    srv = make_server(scenarios, speed=0)
    with openai_sdk(srv) as client:
        assert embed(client).data  # not chosen by its rules
    with (
        openai_sdk(srv, default_headers={"X-Mockstream-Scenario": "limited"}) as client,
        pytest.raises(openai.RateLimitError),
    ):
        embed(client)


def test_a_big_request_answers_quickly_enough(srv):
    body = {"model": "text-embedding-3-large", "input": [f"text {i}" for i in range(2048)], "encoding_format": "base64"}
    started = time.monotonic()
    response = raw(srv, body, timeout=60)
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and len(response.json()["data"]) == 2048
    assert elapsed < 20


# ---------------------------------------------------------------- matrix ---
# Every fault that applies to a whole answer, and the timing knob, on every embeddings route.
GEMINI = "/v1beta/models/gemini-embedding-001"
ROUTES = [
    ("openai", "/v1/embeddings", {"model": MODEL, "input": ["m", "n"]}),
    ("gemini", f"{GEMINI}:embedContent", {"content": {"parts": [{"text": "m"}]}}),
    ("gemini-batch", f"{GEMINI}:batchEmbedContents",
     {"requests": [{"content": {"parts": [{"text": "m"}]}}, {"content": {"parts": [{"text": "n"}]}}]}),
]


@pytest.mark.parametrize(("route", "path", "body"), ROUTES, ids=[r[0] for r in ROUTES])
@pytest.mark.parametrize(
    ("knobs", "outcome", "status"),
    [
        ({"fault": {"kind": "http_error", "status": 503}}, "fault:http_error", 503),
        ({"fault": {"kind": "slow_headers", "ms": 200}}, "fault:slow_headers", 200),
        ({"fault": {"kind": "stall", "ms": 200}}, "fault:stall", 200),
        ({"fault": {"kind": "disconnect"}}, "fault:disconnect", None),
        ({"fault": {"kind": "reset"}}, "fault:reset", None),
        ({"ttft_ms": 200}, "completed", 200),
    ],
    ids=["http_error", "slow_headers", "stall", "disconnect", "reset", "ttft_ms"],
)
def test_matrix(make_server, route, path, body, knobs, outcome, status):
    srv = make_server(speed=1)
    started = time.monotonic()
    try:
        with plain_http() as http:
            response = http.post(f"{srv.url}{path}", json={**body, "mockstream": knobs})
        got = response.status_code
    except httpx.TransportError:
        got = None
    elapsed = time.monotonic() - started
    assert got == status
    if status == 200 and outcome != "fault:http_error":
        assert 0.18 <= elapsed < 3
    assert settled(srv)[-1]["outcome"] == outcome
