"""camel-ai RolePlaying: the model writes both sides of instruction dialogues (AI Society recipe).

An AI user instructs an AI assistant towards a task, turn after turn; both are the same
model behind the gateway. This is how CAMEL's AI-Society and Code datasets were made.
"""

import random

from _common import API_KEY, BASE_URL, MODEL, RESULT, main, param

ASSISTANTS = ["Python Programmer", "Accountant", "Biologist", "Chef", "Data Analyst", "Doctor", "Economist",
              "Historian", "Journalist", "Lawyer", "Mathematician", "Musician", "Nutritionist", "Teacher",
              "Translator", "Web Developer"]
USERS = ["Student", "Entrepreneur", "Farmer", "Nurse", "Real Estate Agent", "Social Media Manager",
         "Stock Trader", "Travel Agent", "Writer", "Athlete", "Architect", "Event Planner"]
TASKS = ["Develop a plan to {goal} for a {user}.", "Help the {user} {goal}.",
         "Write a step-by-step guide so that a {user} can {goal}."]
GOALS = ["analyse monthly expenses", "build a simple website", "prepare a healthy weekly menu",
         "write a research summary", "automate a daily report", "learn the basics of statistics",
         "organise a community event", "plan a marketing campaign", "translate product descriptions",
         "track inventory with a spreadsheet"]


def run() -> None:
    from camel.models import ModelFactory
    from camel.societies import RolePlaying
    from camel.types import ModelPlatformType, ModelType
    from camel.utils import OpenAITokenCounter

    config = {"max_tokens": param("max_tokens", 1024), "temperature": param("temperature", 0.7)}
    rng = random.Random(param("seed", 9))

    def model():
        return ModelFactory.create(model_platform=ModelPlatformType.OPENAI_COMPATIBLE_MODEL, model_type=MODEL,
                                   url=BASE_URL, api_key=API_KEY, model_config_dict=dict(config),
                                   token_counter=OpenAITokenCounter(ModelType.GPT_4))

    for _ in range(param("sessions", 20)):
        assistant, user = rng.choice(ASSISTANTS), rng.choice(USERS)
        task = rng.choice(TASKS).format(goal=rng.choice(GOALS), user=user)
        try:
            session = RolePlaying(
                assistant_role_name=assistant, user_role_name=user, task_prompt=task,
                with_task_specify=param("with_task_specify", False),
                assistant_agent_kwargs={"model": model()}, user_agent_kwargs={"model": model()},
                task_specify_agent_kwargs={"model": model()})
            message = session.init_chat()
            for _ in range(param("turns", 6)):
                assistant_reply, user_reply = session.step(message)
                if assistant_reply.msg is None or user_reply.msg is None:
                    RESULT.error(assistant_reply.info.get("termination_reasons") or "no message")
                    break
                RESULT.ok(2)
                if assistant_reply.terminated or user_reply.terminated:
                    break
                message = assistant_reply.msg
        except Exception as exc:  # noqa: BLE001 - one failed session is one error; the run goes on
            RESULT.error(exc)


main(run)
