"""Function tools for simulated agents: a pool of tool definitions as clients offer them,
and the messages of one tool-use step (the model's call, the client's result).

Agent products offer one fixed set; harvesters of agent trajectories draw a new set per
task from a large pool (ToolBench and APIGen collected thousands of real APIs), so the
same names and schemas are reused here in both ways.
"""

from __future__ import annotations

import json
import random

# (name, description, {parameter: (JSON type, description)})
TOOL_POOL: tuple[tuple[str, str, dict[str, tuple[str, str]]], ...] = (
    ("web_search", "Search the web and return the top results.", {"query": ("string", "search terms")}),
    ("fetch_url", "Download a web page and return its text.", {"url": ("string", "absolute URL")}),
    ("run_python", "Run Python code in a sandbox and return stdout.", {"code": ("string", "the program")}),
    ("read_file", "Read a file from the workspace.", {"path": ("string", "relative path")}),
    ("write_file", "Write a file in the workspace.", {"path": ("string", "relative path"),
                                                      "content": ("string", "new contents")}),
    ("list_directory", "List the files of a directory.", {"path": ("string", "relative path")}),
    ("run_shell", "Run a shell command and return its output.", {"command": ("string", "the command")}),
    ("get_weather", "Current weather for a city.", {"city": ("string", "city name"),
                                                     "unit": ("string", "celsius or fahrenheit")}),
    ("search_flights", "Find flights between two airports on a date.", {
        "origin": ("string", "IATA code"), "destination": ("string", "IATA code"), "date": ("string", "YYYY-MM-DD")}),
    ("book_hotel", "Book a hotel room.", {"hotel_id": ("string", "id from search"), "nights": ("integer", "nights")}),
    ("get_stock_price", "Latest price of a stock ticker.", {"ticker": ("string", "e.g. AAPL")}),
    ("convert_currency", "Convert an amount between currencies.", {
        "amount": ("number", "amount"), "from": ("string", "ISO code"), "to": ("string", "ISO code")}),
    ("sql_query", "Run a read-only SQL query on the analytics database.", {"sql": ("string", "SELECT statement")}),
    ("create_calendar_event", "Create a calendar event.", {
        "title": ("string", "title"), "start": ("string", "ISO time"), "minutes": ("integer", "duration")}),
    ("send_email", "Send an email.", {"to": ("string", "address"), "subject": ("string", "subject"),
                                      "body": ("string", "text")}),
    ("lookup_order", "Look up a customer's order by number.", {"order_id": ("string", "order number")}),
    ("refund_order", "Refund an order.", {"order_id": ("string", "order number"), "reason": ("string", "why")}),
    ("search_knowledge_base", "Search the company knowledge base.", {"query": ("string", "question")}),
    ("calculator", "Evaluate an arithmetic expression.", {"expression": ("string", "e.g. 3*(4+5)")}),
    ("translate_text", "Translate text to a language.", {"text": ("string", "text"), "target": ("string", "language")}),
    ("get_directions", "Route between two places.", {"origin": ("string", "place"), "destination": ("string", "place")}),
    ("query_wikipedia", "Summary of a Wikipedia article.", {"title": ("string", "article title")}),
    ("git_diff", "Show the working tree's diff.", {"path": ("string", "optional path")}),
    ("run_tests", "Run the project's test suite.", {"pattern": ("string", "test selection")}),
    ("create_ticket", "Open a ticket in the issue tracker.", {"title": ("string", "title"),
                                                              "description": ("string", "details")}),
    ("get_user_profile", "A user's profile by id.", {"user_id": ("string", "user id")}),
    ("list_products", "Products matching filters.", {"category": ("string", "category"),
                                                     "max_price": ("number", "upper bound")}),
    ("geocode", "Coordinates of an address.", {"address": ("string", "street address")}),
    ("image_search", "Find images matching a description.", {"query": ("string", "description")}),
    ("news_headlines", "Latest headlines on a topic.", {"topic": ("string", "topic")}),
)


def tool_definition(spec: tuple[str, str, dict[str, tuple[str, str]]]) -> dict:
    """One tool as the chat API takes it (`{"type": "function", "function": {...}}`)."""
    name, description, parameters = spec
    properties = {field: {"type": kind, "description": text} for field, (kind, text) in parameters.items()}
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": list(parameters)}}}


def tool_set(rng: random.Random, size: int) -> list[dict]:
    """`size` distinct tools from the pool, as offered in a request's `tools`."""
    return [tool_definition(spec) for spec in rng.sample(TOOL_POOL, min(size, len(TOOL_POOL)))]


def tool_call_message(rng: random.Random, tool: dict, step: int) -> dict:
    """The assistant's turn that calls `tool` (content null, as the API returns it)."""
    function = tool["function"]
    arguments = {field: _argument(rng, spec["type"]) for field, spec in function["parameters"]["properties"].items()}
    call_id = f"call_{rng.getrandbits(64):016x}{step}"
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function",
         "function": {"name": function["name"], "arguments": json.dumps(arguments)}}]}


def tool_result_message(rng: random.Random, call: dict, chars: int) -> dict:
    """What the client's tool returned for `call`: JSON of about `chars` characters."""
    filler = " ".join(rng.choice(_RESULT_WORDS) for _ in range(max(1, chars // 7)))
    content = json.dumps({"status": "ok", "result": filler})
    return {"role": "tool", "tool_call_id": call["tool_calls"][0]["id"], "content": content}


def _argument(rng: random.Random, kind: str) -> object:
    if kind == "integer":
        return rng.randint(1, 30)
    if kind == "number":
        return round(rng.uniform(1, 5000), 2)
    return " ".join(rng.choice(_RESULT_WORDS) for _ in range(rng.randint(1, 6)))


_RESULT_WORDS = (
    "total", "price", "result", "item", "value", "2024-11-25", "Berlin", "Tokyo", "order", "pending", "shipped",
    "return", "error", "none", "list", "temperature", "18.5", "USD", "EUR", "page", "title", "summary", "row",
    "count", "42", "id", "status", "ok", "data", "match", "file", "src/main.py", "passed", "failed", "line",
)
