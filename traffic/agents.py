"""Tool-using agents, harvesting and honest: the same loop (the model calls a tool, the
client runs it and sends the result back, until the model answers), driven two ways.

A trajectory harvester runs ever-new tasks, each with its own tool set drawn from a large
pool, many in parallel, tools answering at machine speed. An agent product offers one
fixed tool set and system prompt to its real users' tasks, in their rhythm, with human
pauses between a user's turns.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Mapping

from . import prompts, traces
from . import vocabulary as words
from .harvest_pipelines import OFFSETS, cap_options, script_client, stand_in
from .records import APP_AGENTS, CHAT_MODELS, Client, assistant, chat_body, documentation_ip, system, user
from .timing import human_gap, interleave_sessions, paced_arrivals
from .tools import tool_call_message, tool_result_message, tool_set

AGENT_SYSTEM_PROMPTS = (
    "You are a helpful assistant with access to tools. Use them when they help; answer when you are done.",
    ("You are an autonomous agent. Think about which tool to call, call it, observe the result, and repeat until the "
    "task is solved. Then give the final answer."),
    ("Answer the following questions as best you can. You have access to the tools provided. Use the format: "
    "Thought, Action, Action Input, Observation, ... Final Answer."),
    ("Eres un agente que resuelve tareas con las herramientas disponibles. Llama a una herramienta cada vez y da la "
    "respuesta final al terminar."),
    None,
)
AGENT_TASKS = (
    "Find the cheapest flight from {a} to {b} next {day} and book a hotel near the airport.",
    "Check the weather in {a} and {b} and tell me where I should go this weekend.",
    "Read src/{file}, find why the tests fail, fix it and run the tests again.",
    "Look up order {n}, and if it has not shipped, refund it and email the customer.",
    "How much is {n} {cur} in EUR, and what did {ticker} close at today?",
    "Summarise the latest news about {topic} and create a ticket for our team to follow up.",
    "Query the analytics database for last week's signups by country and chart the top five.",
    "Search the web for {topic} and write a one-page brief with sources.",
)
CITIES = ("Berlin", "Tokyo", "Lisbon", "Nairobi", "Denver", "Seoul", "Lima", "Oslo", "Dubai", "Toronto")


def _agent_task(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return prompts.harvest_task(rng)[0]
    return rng.choice(AGENT_TASKS).format(
        a=rng.choice(CITIES), b=rng.choice(CITIES), day=rng.choice(("Monday", "Friday", "weekend")),
        file=rng.choice(("parser.py", "billing.py", "api/routes.py")), n=rng.randint(10000, 99999),
        cur=rng.choice(("USD", "JPY", "GBP")), ticker=rng.choice(("AAPL", "MSFT", "NVDA")),
        topic=rng.choice(words.TOPICS))


def trajectory(rng: random.Random, client: Client, ts: float, body_of, messages: list[dict], tools: list[dict],
               steps: int, tool_gap: tuple[float, float], final_tokens: tuple[int, int, int]) -> Iterator[dict]:
    """One agent turn: `steps` tool calls, each result sent back after `tool_gap` seconds,
    then the final answer; `messages` grows in place, as the client's history does."""
    for step in range(steps + 1):
        final = step == steps
        answer = int(rng.triangular(*final_tokens)) if final else rng.randint(20, 90)
        record = client.request(rng, ts, body_of(list(messages)), answer)
        yield record
        ts = record["ts"] + record["latency_ms"] / 1000
        if final:
            messages.append(assistant(stand_in(rng, record["usage"]["completion_tokens"])))
            return
        call = tool_call_message(rng, rng.choice(tools), step)
        messages.append(call)
        messages.append(tool_result_message(rng, call, rng.randint(100, 2500)))
        ts += rng.uniform(*tool_gap)


def agent_trajectory_harvester(rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
                               ) -> Iterator[dict]:
    """Agent and tool-use trajectories harvested at scale: ever-new tasks, a new tool set each, many in parallel."""
    client, model = script_client(rng, key), rng.choice(CHAT_MODELS)
    system_prompt = rng.choice(AGENT_SYSTEM_PROMPTS)
    options = {**cap_options(rng), "temperature": rng.choice((None, 0.0, 0.7, 1.0)),
               "parallel_tool_calls": rng.choice((None, False))}
    tools_per_task = (rng.randint(1, 3), rng.randint(4, 12))
    most_steps, follow_up_share = rng.randint(2, 8), rng.choice((0.0, 0.3))
    rate, job = rng.uniform(*params["rate_per_s"]), rng.randint(*params["job_requests"])
    end = start_ts + duration_s

    def task_session(ts: float) -> Iterator[dict]:
        tools = tool_set(rng, rng.randint(*tools_per_task))

        def body_of(messages: list[dict]) -> dict:
            return chat_body(model, messages, tools=tools, **options)

        messages = ([system(system_prompt)] if system_prompt else []) + [user(_agent_task(rng))]
        while True:
            last = None
            for last in trajectory(rng, client, ts, body_of, messages, tools, rng.randint(1, most_steps),
                                   (0.05, 2.0), (100, 1500, 400)):
                yield last
            if rng.random() >= follow_up_share:
                return
            messages.append(user(stand_in(rng, rng.randint(15, 60))))  # a simulated user's next request
            ts = last["ts"] + last["latency_ms"] / 1000 + rng.uniform(0.05, 2.0)

    starts = paced_arrivals(rng, start_ts, end, rate / (most_steps / 2 + 1.5), rng.choice(("steady", "poisson",
                                                                                           "bursty")))
    for count, record in enumerate(interleave_sessions(task_session(ts) for ts in starts)):
        if count >= job or record["ts"] >= end:
            return
        yield record


def agent_product(rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
                  ) -> Iterator[dict]:
    """An agent product: one fixed tool set and system prompt, real users' tasks over a few turns, in their rhythm."""
    client = Client(key, documentation_ip(rng, v6_share=0.0), rng.choice(APP_AGENTS), rng.uniform(60, 110))
    model, offset = rng.choice(CHAT_MODELS), rng.choice(OFFSETS)
    tools = tool_set(rng, rng.randint(3, 8))
    system_prompt = rng.choice([p for p in AGENT_SYSTEM_PROMPTS if p] + list(words.APP_SYSTEM_PROMPTS)).format(
        date="2024-11-25")
    options = {**cap_options(rng, (None, 1024, 2048, 4096)), "temperature": rng.choice((None, 0.0, 0.3, 0.7)),
               "stream": rng.choice((None, True))}
    profile = traces.client_profile(rng, traces.LANGUAGE, params["volume_scale"], params["max_requests_per_day"],
                                    steady=True)
    end = start_ts + duration_s

    def session(ts: float) -> Iterator[dict]:
        end_user = hashlib.sha256(f"{key}:{rng.random()}".encode()).hexdigest()[:12]

        def body_of(messages: list[dict]) -> dict:
            return chat_body(model, messages, tools=tools, user=f"enduser-{end_user}", **options)

        messages = [system(system_prompt)]
        for turn in range(rng.choice((1, 1, 2, 3, 4))):
            text = rng.choice(prompts.human_prompts()) if turn == 0 else rng.choice(words.CASUAL_FOLLOW_UPS)
            messages.append(user(text))
            last = None
            for last in trajectory(rng, client, ts, body_of, messages, tools, rng.choice((0, 0, 1, 1, 2, 3)),
                                   (0.2, 4.0), (40, 900, 250)):
                yield last
            ts = last["ts"] + last["latency_ms"] / 1000 + human_gap(rng, 40.0, 0.9)

    arrivals = profile.arrivals(rng, start_ts, end, offset, per_arrival=4.0)
    for record in interleave_sessions(session(ts) for ts in arrivals):
        if record["ts"] >= end:
            return
        yield record
