import openai
import pytest


def collect(client: openai.OpenAI) -> str:
    """The code under test: join the deltas of a streamed answer."""
    stream = client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                            messages=[{"role": "user", "content": "Hi"}])
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


@pytest.mark.mockstream(content="Hello, 世界!", chunk_bytes=1)
def test_collect_survives_one_byte_chunks(mockstream):
    assert collect(mockstream.openai()) == "Hello, 世界!"
    assert mockstream.requests[0].outcome == "completed"


@pytest.mark.asyncio
async def test_async_client_sees_a_cut_stream(mockstream):
    mockstream.script(content="one two three", fault={"kind": "disconnect", "at_token": 2})
    seen = []
    async with mockstream.async_openai(max_retries=0) as client:
        with pytest.raises(openai.APIConnectionError):
            async for chunk in await client.chat.completions.create(
                    model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "Hi"}]):
                seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "one", " two"]
    assert mockstream.requests[0].outcome == "fault:disconnect"
