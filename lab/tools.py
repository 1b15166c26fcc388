"""The lab's catalogue: every tool, the virtualenv it runs in, and the settings it runs at.

A run is one (tool, setting) with its own API key, `sk-lab-<tool>-<setting>`; the corpus
files each key under `scenario` = tool and `label` = the tool's class, and the manifest
joins key_ids back to settings. Settings use each tool's own documented parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Tool:
    name: str
    label: str                   # "attack" (distillation, synthetic data) or "benign"
    venv: str                    # lab/.venvs/<venv>, pinned by lab/requirements/<venv>.txt
    client: str                  # lab/clients/<client>.py
    models: str                  # what the run stands for, for the README and the manifest
    settings: dict[str, dict] = field(default_factory=dict)
    timeout: float = 900.0       # seconds one run may take before it is stopped


@dataclass(frozen=True)
class Run:
    tool: Tool
    setting: str
    params: dict

    @property
    def name(self) -> str:
        return f"{self.tool.name}/{self.setting}"

    @property
    def key(self) -> str:
        return f"sk-lab-{self.tool.name}-{self.setting}"


# Top-level packages each virtualenv installs; lab/requirements/<venv>.txt freezes the rest.
VENVS: dict[str, tuple[str, ...]] = {
    "openai_sdk": ("openai",),
    "distilabel": ("distilabel[openai]", "requests"),
    "curator": ("bespokelabs-curator",),
    "camel": ("camel-ai", "mcp<2"),
    "ragas": ("ragas", "langchain-openai", "langchain-community<0.4", "langchain-text-splitters", "rank_bm25"),
    "dspy": ("dspy",),
    "inspect": ("inspect-ai", "openai"),
    "langchain": ("langchain", "langchain-openai", "langchain-community", "langgraph", "rank_bm25"),
    "instructor": ("instructor",),
}

TOOLS: tuple[Tool, ...] = (
    # --- distillation and synthetic data (attack) ---
    Tool("openai-alpaca", "attack", "openai_sdk", "openai_alpaca",
         "stanford_alpaca's generate_instruction.py replayed with the openai SDK: the Alpaca "
         "prompt plus 3 seed tasks asks for 20 new tasks; every harvested task is then answered",
         {"original-3072": {"generation_max_tokens": 3072, "max_tokens": 1024, "temperature": 1.0,
                            "concurrency": 5, "generation_requests": 60, "answer_requests": 240},
          "short-512": {"generation_max_tokens": 1024, "max_tokens": 512, "temperature": 0.7,
                        "concurrency": 8, "generation_requests": 40, "answer_requests": 260},
          "system-2048": {"generation_max_tokens": 2048, "max_tokens": 2048, "temperature": 1.0,
                          "concurrency": 2, "generation_requests": 50, "answer_requests": 200,
                          "system": "You are a helpful assistant that writes diverse, high-quality task data."}}),
    Tool("distilabel", "attack", "distilabel", "distilabel_pipelines",
         "distilabel pipelines through OpenAILLM: TextGeneration over Alpaca instructions, "
         "EvolInstruct then TextGeneration, SelfInstruct then TextGeneration, UltraFeedback judging",
         {"textgen-512": {"pipeline": "textgen", "max_new_tokens": 512, "temperature": 0.7,
                          "input_batch_size": 8, "rows": 300},
          "evol-1024": {"pipeline": "evol", "max_new_tokens": 1024, "temperature": 1.0,
                        "input_batch_size": 10, "rows": 60, "num_evolutions": 3},
          "selfinstruct-2048": {"pipeline": "selfinstruct", "max_new_tokens": 2048, "temperature": 1.0,
                                "input_batch_size": 5, "rows": 60,
                                "system_prompt": "You are an expert data generator."},
          "ultrafeedback-4096": {"pipeline": "ultrafeedback", "max_new_tokens": 4096, "temperature": 0.2,
                                 "input_batch_size": 4, "rows": 100}}),
    Tool("curator", "attack", "curator", "curator_reasoning",
         "bespokelabs-curator LLM class distilling step-by-step reasoning traces on maths and code problems",
         {"reasoning-4096": {"max_tokens": 4096, "temperature": 0.7, "max_requests_per_minute": 600, "rows": 250},
          "reasoning-1024-sys": {"max_tokens": 1024, "temperature": 1.0, "max_requests_per_minute": 300, "rows": 300,
                                 "system": True},
          "answers-2048": {"max_tokens": 2048, "temperature": 0.0, "max_requests_per_minute": 1200, "rows": 200,
                           "reasoning": False}}),
    Tool("camel", "attack", "camel", "camel_roleplay",
         "camel-ai RolePlaying: the model plays both the AI user and the AI assistant, writing "
         "multi-turn instruction dialogues (the CAMEL AI-Society data recipe)",
         {"roleplay-1024": {"max_tokens": 1024, "temperature": 0.7, "sessions": 20, "turns": 6},
          "roleplay-4096-t1": {"max_tokens": 4096, "temperature": 1.0, "sessions": 15, "turns": 8},
          "roleplay-512-specify": {"max_tokens": 512, "temperature": 0.2, "sessions": 30, "turns": 4,
                                   "with_task_specify": True}}),
    # --- honest automation (benign) ---
    Tool("logprob-classifier", "benign", "openai_sdk", "openai_classifier",
         "an intent router with the openai SDK: one-token answers with logprobs=True, top_logprobs=5",
         {"system-t0": {"system": True, "temperature": 0.0, "concurrency": 4, "requests": 300},
          "user-t0": {"system": False, "temperature": 0.0, "concurrency": 8, "requests": 300},
          "system-t1-serial": {"system": True, "temperature": 1.0, "concurrency": 1, "requests": 200}}),
    Tool("ragas", "benign", "ragas", "ragas_eval",
         "ragas LLM-as-judge evaluation of a RAG app's answers: faithfulness, answer relevancy, "
         "context precision, through langchain-openai",
         {"default": {"max_tokens": 1024, "temperature": 0.0, "max_workers": 8, "samples": 30},
          "workers2-4096": {"max_tokens": 4096, "temperature": 0.0, "max_workers": 2, "samples": 25},
          "t05-512": {"max_tokens": 512, "temperature": 0.5, "max_workers": 16, "samples": 30}}),
    Tool("dspy", "benign", "dspy", "dspy_optimize",
         "DSPy prompt optimisation: BootstrapFewShot (and random search) of a chain-of-thought "
         "QA program on a local arithmetic set, then evaluation",
         {"bootstrap-1024": {"optimizer": "bootstrap", "max_tokens": 1024, "temperature": 0.0,
                             "num_threads": 4, "train": 40, "dev": 60},
          "random-search-256": {"optimizer": "random_search", "max_tokens": 256, "temperature": 0.7,
                                "num_threads": 8, "train": 30, "dev": 40, "candidates": 3},
          "bootstrap-4096-serial": {"optimizer": "bootstrap", "max_tokens": 4096, "temperature": 1.0,
                                    "num_threads": 1, "train": 30, "dev": 50}}),
    Tool("inspect", "benign", "inspect", "inspect_bench",
         "inspect-ai benchmark run on a local JSONL: generate() and match() on arithmetic "
         "questions, and model-graded answers to MT-Bench questions",
         {"match-256": {"task": "arithmetic", "max_tokens": 256, "temperature": 0.0, "max_connections": 10,
                        "limit": 200},
          "graded-1024-sys": {"task": "graded", "max_tokens": 1024, "temperature": 0.7, "max_connections": 4,
                              "limit": 80, "system": True},
          "cot-4096": {"task": "arithmetic_cot", "max_tokens": 4096, "temperature": 0.0, "max_connections": 2,
                       "limit": 120}}),
    Tool("langchain-rag", "benign", "langchain", "langchain_rag",
         "a LangChain RAG app over distillguard's docs: BM25 retrieval, a prompt with the passages, "
         "ChatOpenAI answers to user questions",
         {"k4-512": {"k": 4, "max_tokens": 512, "temperature": 0.0, "concurrency": 4, "questions": 113},
          "k8-2048-t07": {"k": 8, "max_tokens": 2048, "temperature": 0.7, "concurrency": 1, "questions": 113},
          "k2-256-nosys": {"k": 2, "max_tokens": 256, "temperature": 0.0, "concurrency": 8, "questions": 113,
                           "system": False}}),
    Tool("langchain-agent", "benign", "langchain", "langchain_agent",
         "a LangGraph ReAct agent with tools (calculator, docs search, clock) answering user questions",
         {"react-1024": {"max_tokens": 1024, "temperature": 0.0, "tasks": 100},
          "react-4096-t07": {"max_tokens": 4096, "temperature": 0.7, "tasks": 80},
          "react-256-sys": {"max_tokens": 256, "temperature": 0.0, "tasks": 100, "system": True}}),
    Tool("instructor", "benign", "instructor", "instructor_extract",
         "an instructor extraction pipeline: pydantic models filled from request texts, with "
         "validation retries",
         {"tools-512": {"mode": "tools", "max_tokens": 512, "temperature": 0.0, "concurrency": 4, "rows": 200},
          "json-1024": {"mode": "json_schema", "max_tokens": 1024, "temperature": 0.0, "concurrency": 8, "rows": 200},
          "md-json-2048-sys": {"mode": "md_json", "max_tokens": 2048, "temperature": 0.3, "concurrency": 2,
                               "rows": 150, "system": True}}),
)


def all_runs(only: list[str] | None = None) -> list[Run]:
    """Every (tool, setting); `only` keeps runs whose tool name or `tool/setting` is listed."""
    runs = [Run(tool, setting, params) for tool in TOOLS for setting, params in tool.settings.items()]
    if only:
        runs = [r for r in runs if r.tool.name in only or r.name in only]
    return runs
