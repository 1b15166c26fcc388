"""A LangGraph ReAct agent with tools, answering user questions (honest agent traffic).

Tools: a calculator, a search over distillguard's docs, and a clock. Each task is a
user question; the agent calls tools until it can answer, as an internal assistant does.
"""

import ast
import operator
import random

from _common import MODEL, REPO, RESULT, main, param, rows

SYSTEM = "You are a helpful assistant. Use the tools when they help, then answer briefly."
OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def evaluate(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](evaluate(node.left), evaluate(node.right))
    raise ValueError("only + - * / on numbers")


def run() -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import create_react_agent

    docs = {p.name: p.read_text() for p in sorted((REPO / "docs").glob("*.md"))}

    @tool
    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression with + - * / and return the number."""
        try:
            return str(evaluate(ast.parse(expression, mode="eval").body))
        except (ValueError, SyntaxError, ZeroDivisionError) as exc:
            return f"error: {exc}"

    @tool
    def search_docs(query: str) -> str:
        """Search distillguard's documentation and return the best matching paragraph."""
        words = set(query.lower().split())
        paragraphs = [p for text in docs.values() for p in text.split("\n\n")]
        return max(paragraphs, key=lambda p: len(words & set(p.lower().split())))[:1500]

    @tool
    def current_time(timezone: str = "UTC") -> str:
        """Return the current date and time in a timezone."""
        return f"2026-12-02T05:00:00 {timezone}"

    llm = ChatOpenAI(model=MODEL, max_tokens=param("max_tokens", 1024), temperature=param("temperature", 0.0),
                     max_retries=2)
    agent = create_react_agent(llm, [calculator, search_docs, current_time],
                               prompt=SYSTEM if param("system", False) else None)
    rng = random.Random(11)
    arithmetic = [r["question"] for r in rows("arithmetic_qa_200.jsonl")]
    product = [r["question"] for r in rows("rag_questions.jsonl")]
    for index in range(param("tasks", 60)):
        question = rng.choice(arithmetic if index % 2 else product)
        try:
            agent.invoke({"messages": [("user", question)]}, config={"recursion_limit": 12})
            RESULT.ok()
        except Exception as exc:  # noqa: BLE001 - a failed task is one error; the agent goes on
            RESULT.error(exc)


main(run)
