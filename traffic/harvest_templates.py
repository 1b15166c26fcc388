"""Prompt templates of public synthetic-data pipelines, several per family so that each
harvesting key picks its own (and some in other languages than English).

The English texts follow the pipelines' published prompts: WizardLM's Evol-Instruct
rewriter, CAMEL's role-playing inception prompts, UltraFeedback's rating rubric, MT-Bench's
judge, Bespoke-Stratos' reasoning system prompt and Magicoder's OSS-Instruct.
"""

from __future__ import annotations

# --- Evol-Instruct: {prompt} is the instruction being evolved -----------------------------
EVOL_DEPTH = (
    "I want you act as a Prompt Rewriter.\nYour objective is to rewrite a given prompt into a more complex version "
    "to make those famous AI systems (e.g., chatgpt and GPT4) a bit harder to handle.\nBut the rewritten prompt must "
    "be reasonable and must be understood and responded by humans.\nYou SHOULD complicate the given prompt using the "
    "following method:\n{method}\nYou should try your best not to make the #Rewritten Prompt# become verbose, "
    "#Rewritten Prompt# can only add 10 to 20 words into #The Given Prompt#.\n#The Given Prompt#:\n{prompt}\n"
    "#Rewritten Prompt#:\n"
)
EVOL_METHODS = (
    "Please add one more constraints/requirements into #The Given Prompt#",
    ("If #The Given Prompt# contains inquiries about certain issues, the depth and breadth of the inquiry can be "
    "increased."),
    "Please replace general concepts with more specific concepts.",
    ("If #The Given Prompt# can be solved with just a few simple thinking processes, you can rewrite it to explicitly "
    "request multiple-step reasoning."),
)
EVOL_BREADTH = (
    "I want you act as a Prompt Creator.\nYour goal is to draw inspiration from the #Given Prompt# to create a brand "
    "new prompt.\nThis new prompt should belong to the same domain as the #Given Prompt# but be even more rare.\n"
    "The LENGTH and complexity of the #Created Prompt# should be similar to that of the #Given Prompt#.\n"
    "The #Created Prompt# must be reasonable and must be understood and responded by humans.\n"
    "#Given Prompt#:\n{prompt}\n#Created Prompt#:\n"
)
EVOL_ZH = (
    "我希望你充当提示词改写者。\n你的目标是把给定的提示改写成更复杂的版本，让著名的 AI 系统更难处理。\n改写后的提示必须合理，"
    "并且能被人类理解和回答。\n请用以下方法使提示更复杂：{method}\n#给定提示#：\n{prompt}\n#改写后的提示#：\n"
)
EVOL_ES = (
    "Quiero que actúes como reescritor de instrucciones. Tu objetivo es reescribir la instrucción dada en una versión "
    "más compleja, para que sea más difícil de resolver para los sistemas de IA más conocidos, pero que siga siendo "
    "razonable y comprensible para una persona.\nMétodo: {method}\n#Instrucción dada#:\n{prompt}\n"
    "#Instrucción reescrita#:\n"
)
EVOL_TEMPLATES = {"depth": EVOL_DEPTH, "breadth": EVOL_BREADTH, "zh": EVOL_ZH, "es": EVOL_ES}
EVOL_ELIMINATION = (
    "Here are two Instructions to ChatGPT AI, do you think they are equal to each other, which meet the following "
    "requirements:\n1. They have same constraints and requirments.\n2. They have same depth and breadth of the "
    "inquiry.\nThe First Prompt: {first}\nThe Second Prompt: {second}\nYour Judgement (Just answer: Equal or Not "
    "Equal. No need to explain the reason.):"
)
EVOL_ADDITIONS = (
    "Make sure the answer also covers the edge cases.", "Limit the explanation to readers without a background in it.",
    "Include a comparison with at least two alternatives.", "Provide the result as a table as well.",
    "Justify each step with a reference to a general principle.", "Assume the budget is cut in half.",
    "Consider the impact on a team of twelve people.", "Require the solution to run in linear time.",
    "The answer must mention one historical precedent.", "Add a short risk analysis at the end.",
)

# --- CAMEL role-playing ({user_role}, {assistant_role}, {task}) ---------------------------
CAMEL_TASK_SPECIFY = (
    "Here is a task that {assistant_role} will help {user_role} to complete: {task}.\nPlease make it more specific. "
    "Be creative and imaginative.\nPlease reply with the specified task in {words} words or less. Do not add anything "
    "else."
)
CAMEL_ASSISTANT = (
    "Never forget you are a {assistant_role} and I am a {user_role}. Never flip roles! Never instruct me!\nWe share a "
    "common interest in collaborating to successfully complete a task.\nYou must help me to complete the task.\nHere "
    "is the task: {task}. Never forget our task!\nI must instruct you based on your expertise and my needs to "
    "complete the task.\nUnless I say the task is completed, you should always start with:\n\nSolution: "
    "<YOUR_SOLUTION>\n\n<YOUR_SOLUTION> should be very specific, include detailed explanations and provide preferable "
    "detailed implementations and examples and lists for task-solving.\nAlways end <YOUR_SOLUTION> with: Next request."
)
CAMEL_USER = (
    "Never forget you are a {user_role} and I am a {assistant_role}. Never flip roles! You will always instruct me.\n"
    "We share a common interest in collaborating to successfully complete a task.\nI must help you to complete the "
    "task.\nHere is the task: {task}. Never forget our task!\nYou must instruct me based on my expertise and your "
    "needs to solve the task ONLY in the following two ways:\n\n1. Instruct with a necessary input:\nInstruction: "
    "<YOUR_INSTRUCTION>\nInput: <YOUR_INPUT>\n\n2. Instruct without any input:\nInstruction: <YOUR_INSTRUCTION>\n"
    "Input: None\n\nYou must give me one instruction at a time.\nWhen the task is completed, you must only reply with "
    "a single word <CAMEL_TASK_DONE>."
)
CAMEL_KICKOFF = "Now start to give me instructions one by one. Only reply with Instruction and Input."
ASSISTANT_ROLES = ("Python Programmer", "Accountant", "Biologist", "Chef", "Data Analyst", "Doctor", "Economist",
                   "Lawyer", "Marketer", "Mechanical Engineer", "Nutritionist", "Physicist", "Teacher", "Translator",
                   "Web Developer", "Historian", "Statistician", "Architect", "Psychologist", "Journalist")
USER_ROLES = ("Entrepreneur", "Student", "Farmer", "Nurse", "Investor", "Artist", "Athlete", "Pilot", "Librarian",
              "Social Worker", "Gamer", "Retiree", "Shop Owner", "Mayor", "Scientist", "Traveller", "Parent",
              "Musician", "Chef", "Engineer")
CAMEL_TASKS = ("Develop a trading bot for the stock market", "Plan a community vegetable garden",
               "Write a grant proposal for a rural clinic", "Design a study plan for the bar exam",
               "Create a marketing campaign for a new bakery", "Analyse the causes of a sales decline",
               "Build a budget for a small film production", "Prepare a lesson on photosynthesis",
               "Draft a privacy policy for a fitness app", "Optimise a delivery route for a food truck")
# UltraChat-style user simulator: the model writes the next user turn from the dialogue so far.
USER_SIMULATOR = (
    "You are role-playing a curious human user talking to an AI assistant about: {task}.\nHere is the conversation so "
    "far:\n{dialogue}\nWrite the user's next message only. Ask a natural follow-up question that digs deeper."
)

# --- grading / reward-model data ----------------------------------------------------------
ULTRAFEEDBACK_ASPECTS = {
    "helpfulness": "Evaluate the outputs for informativeness and helpfulness: correctness, clarity, useful and "
                   "comprehensive information, no repetition.",
    "honesty": "Assess how well the model conveys honesty and uncertainty: is it confident when correct, does it "
               "express uncertainty when unsure?",
    "instruction_following": "Evaluate alignment between output and intent: does the text meet the task goal and "
                             "the restrictions (text styles, formats, designated methods)?",
    "truthfulness": "Evaluate the model's accuracy in providing information without introducing misleading or "
                    "fabricated details (hallucination).",
}
ULTRAFEEDBACK = (
    "# {aspect_title} Assessment\n\n{rubric}\n\n**Scoring**: Rate outputs 1 to 5.\n\n## Format:\n\n### Input\n"
    "Instruction: [Clearly specify the task goal and restrictions]\n\nTexts:\n{slots}\n\n### Output\n{outputs}\n\n---\n\n"
    "## Annotation\n\n### Input\nInstruction: {instruction}\n\nTexts:\n{texts}\n\n### Output"
)
PAIRWISE_JUDGE = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the "
    "user question displayed below. Avoid any position biases. Begin your evaluation by comparing the two responses "
    "and provide a short explanation. After providing your explanation, output your final verdict by strictly "
    "following this format: \"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is better, and \"[[C]]\" "
    "for a tie.\n\n[User Question]\n{instruction}\n\n[The Start of Assistant A's Answer]\n{a}\n[The End of Assistant "
    "A's Answer]\n\n[The Start of Assistant B's Answer]\n{b}\n[The End of Assistant B's Answer]"
)
SINGLE_GRADE_DE = (
    "Bitte bewerte als unparteiischer Richter die Qualität der folgenden Antwort eines KI-Assistenten auf die Frage "
    "des Nutzers. Berücksichtige Hilfsbereitschaft, Relevanz, Genauigkeit, Tiefe und Detailgrad. Gib zuerst eine "
    "ausführliche Begründung und dann eine Note von 1 bis 10 im Format \"[[Note]]\".\n\n[Frage]\n{instruction}\n\n"
    "[Antwort]\n{a}"
)

# --- reasoning traces through the system prompt --------------------------------------------
REASONING_SYSTEM_PROMPTS = (
    ("Your role as an assistant involves thoroughly exploring questions through a systematic long thinking process "
    "before providing the final precise and accurate solutions. This requires engaging in a comprehensive cycle of "
    "analysis, summarizing, exploration, reassessment, reflection, backtracing, and iteration to develop well-"
    "considered thinking process. Please structure your response into two main sections: Thought and Solution."),
    ("You are a helpful assistant. First think through the problem inside <think> </think> tags, in as much detail as "
    "you need, then give the final answer after the closing tag."),
    ("A conversation between User and Assistant. The assistant first thinks about the reasoning process in the mind "
    "and then provides the user with the answer. The reasoning process and answer are enclosed within <think> "
    "</think> and <answer> </answer> tags, respectively."),
    "你是一个乐于助人的助手。回答之前，请先在 <think></think> 标签中详细写出你的完整思考过程，然后给出最终答案。",
    ("Eres un asistente experto. Antes de responder, razona en detalle dentro de las etiquetas <think></think> y "
    "después da la respuesta final."),
)

# --- code capability harvest ---------------------------------------------------------------
OSS_INSTRUCT = (
    "You are exceptionally skilled at crafting high-quality programming problems and offering precise solutions.\n\n"
    "Please gain inspiration from the following random code snippet to create a high-quality programming problem. "
    "Present your output in two distinct sections: [Problem Description] and [Solution].\n\nCode snippet for "
    "inspiration:\n```\n{snippet}\n```\n\nGuidelines for each section:\n\n1. [Problem Description]: This should be "
    "**completely self-contained**, providing all the contextual information one needs to understand and solve the "
    "problem.\n2. [Solution]: Offer a comprehensive, **correct** solution that accurately addresses the "
    "[Problem Description] you provided."
)
CODE_TASKS = (
    "Write a {language} function that {goal}. Include type hints, docstrings and unit tests.",
    "Implement {goal} in {language}. Explain the time and space complexity of your solution.",
    "Solve the following problem in {language}: {goal}. Give a complete, runnable program.",
    "用 {language} 实现一个函数：{goal}。请给出完整代码和测试用例。",
    "Escribe en {language} un programa que {goal}. Incluye pruebas unitarias y comentarios.",
    "Refactor this {language} code so that it {goal}, and explain every change:\n```\n{snippet}\n```",
)
CODE_GOALS = (
    "parses a CSV file and reports per-column statistics", "finds the longest palindromic substring",
    "implements an LRU cache with O(1) operations", "merges overlapping intervals",
    "validates and normalises email addresses", "computes the shortest path in a weighted graph",
    "rate-limits calls with a token bucket", "serialises a binary tree to a string and back",
    "detects cycles in a directed graph", "streams a large JSON file without loading it in memory",
    "implements a trie with prefix search", "schedules tasks with dependencies (topological sort)",
    "retries HTTP requests with exponential backoff", "computes edit distance between two strings",
    "implements a thread-safe bounded queue", "evaluates arithmetic expressions with operator precedence",
)
CODE_LANGUAGES = ("Python", "JavaScript", "TypeScript", "Go", "Rust", "Java", "C++", "C#", "Kotlin", "SQL")
CODE_SYSTEM_PROMPTS = (
    None, "You are an expert software engineer. Write clean, correct, idiomatic code with tests.",
    "You are a world-class competitive programmer.",
)
