"""Fixtures for the fake OpenAI + Anthropic upstream (bench/fake_upstream.py documents the controller API).

`fake_upstream` yields the session's server after resetting its config, faults and recorded requests::

    def test_something(fake_upstream):
        fake_upstream.configure(reply="Bonjour", usage={"input_tokens": 10, "output_tokens": 2})
        fake_upstream.fail_next("429", retry_after=1, times=2)
        client = openai.OpenAI(base_url=fake_upstream.openai_base_url, api_key="sk-test", max_retries=0)
        ...
        assert fake_upstream.last_request.body["stream_options"] == {"include_usage": True}
"""

import pytest

from bench.fake_upstream import FakeUpstream


@pytest.fixture(scope="session")
def fake_upstream_server():
    """One fake upstream for the whole session, on 127.0.0.1 and a free port, served from its own thread."""
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_upstream(fake_upstream_server):
    """The session's fake upstream, reset before and after each test (config, faults, recorded requests)."""
    fake_upstream_server.reset()
    yield fake_upstream_server
    fake_upstream_server.reset()
