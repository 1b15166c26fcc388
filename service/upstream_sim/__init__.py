"""An OpenAI-compatible upstream simulator for tests, the demo, the lab and benchmarks: it
answers like a model (lengths from real traces, conforming JSON, tool calls, reasoning,
logprobs), or with a fixed short answer where only the gateway's cost should count."""

from .app import MODELS, MockSettings, MockUpstream, create_mock_app, serve_mock

__all__ = ["MODELS", "MockSettings", "MockUpstream", "create_mock_app", "serve_mock"]
