"""Hand-written word lists the simulated clients fill their prompts from.

Real human prompts come from traffic/data; these lists cover what no licensed data set
gives us: harvesters' slot fillers, reasoning-elicitation phrasing in several languages,
a support desk's questions and an intranet's documents. They are invented for simulation.
"""

from __future__ import annotations

TOPICS = (
    "photosynthesis", "public-key cryptography", "the French Revolution", "supply and demand",
    "plate tectonics", "CRISPR gene editing", "black holes", "the human immune system",
    "compound interest", "convolutional neural networks", "blockchain consensus",
    "climate feedback loops", "the fall of the Roman Republic", "quantum entanglement",
    "inflation", "mRNA vaccines", "the water cycle", "DNS resolution", "TCP congestion control",
    "garbage collection", "database indexing", "the Krebs cycle", "game theory", "the Silk Road",
    "impressionist painting", "the Big Bang", "natural selection", "how stock exchanges work",
    "central bank interest rates", "the Industrial Revolution", "antibiotic resistance",
    "ocean currents", "machine translation", "sorting algorithms", "recursion",
    "operating system scheduling", "virtual memory", "the electoral college", "the Cold War",
    "the printing press", "grid-scale energy storage", "nuclear fission", "general relativity",
    "entropy", "the placebo effect", "cognitive biases", "Bayes' theorem",
    "the central limit theorem", "linear regression", "gradient descent", "the transformer architecture",
    "reinforcement learning", "the gut microbiome", "sleep cycles", "the Renaissance",
    "the Meiji Restoration", "the Bretton Woods system", "the theory of comparative advantage",
    "semiconductor manufacturing", "the Doppler effect", "superconductivity", "volcanic eruptions",
    "coral reef ecosystems", "the nitrogen cycle", "Byzantine fault tolerance",
    "the CAP theorem", "memory safety in Rust", "functional programming", "the halting problem",
    "P versus NP", "elliptic curve cryptography", "the Fourier transform", "eigenvalues",
    "the Monty Hall problem", "prime number distribution", "the history of jazz",
    "Baroque architecture", "stoicism", "utilitarianism", "the social contract",
    "the separation of powers", "behavioural economics", "the tragedy of the commons",
    "urban heat islands", "desalination", "vertical farming", "the history of the internet",
    "public health surveillance", "the Apollo program", "exoplanet detection",
    "the life cycle of stars", "bird migration", "protein folding", "epigenetics",
    "the Treaty of Westphalia", "the Ottoman Empire", "the Great Depression", "Keynesian economics",
    "container orchestration", "zero-knowledge proofs", "differential privacy",
)

AUDIENCES = (
    "a ten-year-old", "a high-school student", "a first-year university student", "a software engineer",
    "a retired teacher", "a business executive", "a nurse", "a policy maker",
    "a non-native English speaker", "a PhD student from another field", "a journalist", "an investor",
)

ASPECTS = (
    "its history, the key ideas, common misconceptions and real-world applications",
    "how it works, why it matters and what is still unknown",
    "definitions, two worked examples and three practice questions with answers",
    "the underlying principles, a concrete analogy and the main criticisms",
    "its origins, the most important people involved and its lasting impact",
    "the core mechanism, edge cases and how experts reason about it",
)

FORMS = (
    "short story", "poem", "blog post", "product description", "cover letter", "persuasive essay",
    "dialogue between two friends", "news article", "speech", "limerick", "recipe", "FAQ page",
)

GOALS = (
    "improving productivity at work", "learning a new language", "saving money on groceries",
    "preparing for a job interview", "staying motivated while studying", "reducing stress",
    "planning a wedding on a budget", "starting a vegetable garden", "running a first marathon",
    "onboarding new employees", "writing clean code", "hosting a dinner party",
)

# Sentences to rewrite or classify: any subject with any predicate.
SENTENCE_SUBJECTS = (
    "The meeting", "Our new phone", "The restaurant's service", "The museum tour", "My neighbour's dog",
    "The morning train", "The concert", "The software update", "The hotel room", "The new manager",
    "The weather this weekend", "This laptop", "The school play", "The city's new bike lanes",
)
SENTENCE_PREDICATES = (
    "was surprisingly good.", "was postponed again.", "turned out to be a complete disaster.",
    "made everyone laugh.", "cost far more than we expected.", "exceeded all our expectations.",
    "was slow, but worth the wait.", "broke down after two days.", "is the best thing that happened this year.",
    "left a lot to be desired.", "was cancelled without any notice.", "impressed even the harshest critics.",
)
TONES = ("formal", "friendly", "concise", "persuasive", "polite", "humorous", "neutral", "enthusiastic")

LANGUAGES = ("French", "Spanish", "German", "Japanese", "Chinese", "Italian", "Portuguese", "Korean")

# Harvester instruction families: {topic}, {topic2}, {form}, {goal}, {n}, {sentence}, {language}, {audience}, {tone}.
INSTRUCTION_TEMPLATES = (
    "Write a {form} about {topic}.",
    "Give me {n} practical tips for {goal}.",
    "Explain the difference between {topic} and {topic2}.",
    "Rewrite the following sentence to make it more {tone}: {sentence}",
    "Classify the sentiment of this sentence as positive, negative or neutral: {sentence}",
    "Summarize the main arguments for and against {topic}.",
    "Create a quiz with {n} multiple-choice questions about {topic}.",
    "Translate the sentence into {language} and explain the grammar: {sentence}",
    "Create a {n}-day plan for {goal}.",
    "What are the advantages and disadvantages of {goal} for {audience}?",
    "Describe {topic} to {audience}.",
    "Generate a list of {n} interview questions about {topic}.",
    "Identify the main verb and the subject in this sentence, then rewrite it in the past perfect: {sentence}",
    "Write a short dialogue in which {audience} asks about {topic}.",
    "Suggest {n} creative titles for an article about {topic}.",
)

# Constraints a harvester appends to a seed task to get a new training pair from it.
SEED_VARIATIONS = (
    "", "Give {n} examples.", "Write it for {audience}.", "Keep it under {words} words.",
    "Answer in at least {words} words.", "Explain your answer.", "Use a numbered list.",
    "Then translate your answer into {language}.", "Offer {n} alternatives.", "Add a one-line summary at the end.",
)

# The Alpaca training format (stanford_alpaca train.py): harvested pairs are often asked for in it.
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)

REASONING_PHRASES = {
    "en": ("Let's think step by step.", "Solve it step by step and show your reasoning.",
           "Explain your reasoning step by step before giving the final answer."),
    "zh": ("请一步一步思考。", "请一步一步思考，并写出详细推理过程。"),
    "es": ("Piensa paso a paso.", "Resuélvelo paso a paso y muestra tu razonamiento."),
    "fr": ("Réfléchis étape par étape.", "Explique ton raisonnement étape par étape."),
    "de": ("Denke Schritt für Schritt.", "Löse die Aufgabe Schritt für Schritt und begründe jeden Schritt."),
    "ja": ("ステップバイステップで考えてください。", "ステップバイステップで解いて、理由も説明してください。"),
}

# Word problems per language: {a}, {b}, {c}, {n} are small integers.
REASONING_TASKS = {
    "en": ("If {a} workers build a wall in {b} days, how many days do {c} workers need?",
           "What is the sum of all multiples of {a} below {n}?",
           "A shop sells pens at {a} for {b} dollars. How much do {n} pens cost?"),
    "zh": ("一个水池有两个进水管，甲管单独注满需要{a}小时，乙管单独注满需要{b}小时。两管同时打开，多少小时可以注满？",
           "小明有{n}个苹果，给了小红{a}个，又买了{b}个，现在有多少个？"),
    "es": ("Si {a} obreros construyen un muro en {b} días, ¿cuántos días necesitan {c} obreros?",
           "¿Cuál es la suma de todos los múltiplos de {a} menores que {n}?"),
    "fr": ("Si {a} ouvriers construisent un mur en {b} jours, combien de jours faut-il à {c} ouvriers ?",
           "Quelle est la somme des multiples de {a} inférieurs à {n} ?"),
    "de": ("Wenn {a} Arbeiter eine Mauer in {b} Tagen bauen, wie viele Tage brauchen {c} Arbeiter?",
           "Ein Kapital von {n} Euro wird zu {a} % jährlich verzinst. Wie hoch ist es nach {b} Jahren?"),
    "ja": ("{a}人の作業員が{b}日で壁を作ります。{c}人では何日かかりますか？",
           "1から{n}までの整数のうち、{a}で割り切れる数はいくつありますか？"),
}

# Parts a paraphrasing harvester draws independently, so no two prompts share a frame.
PARAPHRASE_OPENINGS = (
    "", "", "Hi!", "Hello,", "Quick question:", "I'm preparing for an exam.", "For a project I'm working on,",
    "My teacher mentioned this today.", "Hey there.", "I've always wondered about this.", "Please help:",
)
PARAPHRASE_ASKS = (
    "explain {topic}", "could you walk me through {topic}?", "what's the real story behind {topic}?",
    "break down how {topic} works", "I'd like an in-depth overview of {topic}", "teach me about {topic}",
    "tell me everything important about {topic}", "how would you describe {topic}?",
    "give a thorough account of {topic}", "what should someone know about {topic}?",
    "help me understand {topic}", "can you write up {topic} for me?",
)
PARAPHRASE_EXTRAS = (
    "Use concrete examples.", "Assume I know nothing.", "Be thorough.", "Include some history.",
    "Cover the usual mistakes people make.", "Structure it with headings.", "Go into real depth.",
    "Add an analogy or two.", "End with a short summary.", "Don't skip the technical details.",
    "Make it long and detailed.", "List the key terms at the end.",
)

SUPPORT_SYSTEM_PROMPT = (
    "You are Nova, the customer support assistant of Northwind Cloud Backup. Answer politely and briefly. "
    "Only discuss Northwind products: backup plans, billing, the desktop and mobile apps, restores and "
    "account security. Never reveal internal tools. If the customer asks for a refund over $100, a data "
    "deletion or anything you cannot do, offer to open a ticket with a human agent."
)
SUPPORT_QUESTIONS = (
    "I can't log in to my account, it says my password is wrong.",
    "How do I restore a folder I deleted last week?",
    "Why was I charged twice this month? Order {n}.",
    "The backup on my {device} has been stuck at {p}% since yesterday.",
    "How do I upgrade from the Basic plan to Family?",
    "Can I back up an external drive?",
    "My invoice {n} shows the wrong company address.",
    "Is my data encrypted before it leaves my computer?",
    "How do I turn on two-factor authentication?",
    "The mobile app keeps crashing when I open Photos.",
    "I want to cancel my subscription.",
    "How much storage do I have left?",
    "Can I share a backup with my partner?",
    "I got an email saying my backup failed on {device}. What should I do?",
    "Do you have a student discount?",
    "How long do you keep deleted files?",
    "I changed my phone. How do I move my backups to the new one?",
    "The restore is very slow, only about {p} MB per second.",
)
SUPPORT_FOLLOW_UPS = (
    "That didn't work.", "Ok, thanks!", "Where do I find that setting?", "It's a {device}.",
    "Can you open a ticket please?", "How long will that take?", "I already tried that.",
    "Great, it works now.", "And will I lose any files?", "Is there a fee for that?",
)
DEVICES = ("Windows laptop", "MacBook", "iPhone", "Android phone", "Linux desktop", "NAS", "iPad")

DEV_FOLLOW_UPS = (
    "That throws `TypeError: 'NoneType' object is not subscriptable` on the second line. Any idea?",
    "Can you add type hints and docstrings?", "Now write unit tests for it with pytest.",
    "It works, but it's slow on large inputs. How can I speed it up?",
    "Can you rewrite it without the external dependency?", "Explain what the regex does, part by part.",
    "Here's the stack trace:\n```\nTraceback (most recent call last):\n  File \"main.py\", line {n}, in <module>\n"
    "    run()\nKeyError: 'id'\n```", "Make it async.", "How would I handle errors there?",
    "Could you refactor that into smaller functions?", "What's the time complexity?",
    "Ok, and how do I deploy this with Docker?",
)
CASUAL_FOLLOW_UPS = (
    "Thanks! Can you make it shorter?", "Can you give me an example?", "Why is that?",
    "Could you explain that more simply?", "Great, what else should I know?", "Can you put that in a table?",
)

# An intranet's knowledge base, for the RAG service and the batch document job.
DOCUMENT_SENTENCES = (  # (sentence, smallest and largest {n})
    ("Employees may work remotely up to {n} days per week with their manager's approval.", 1, 4),
    ("Expense reports must be submitted within {n} days of the purchase date.", 14, 60),
    ("The on-call engineer acknowledges pages within {n} minutes and opens an incident channel.", 5, 30),
    ("Customer data is stored in the EU region and replicated to a second data centre every {n} minutes.", 5, 60),
    ("All production deployments require a reviewed change request and a rollback plan.", 0, 0),
    ("Laptops are replaced every {n} years or earlier if a hardware fault is confirmed.", 3, 5),
    ("Travel above {n} euros needs approval from the budget owner before booking.", 500, 3000),
    ("Security training is mandatory for new staff and must be renewed every year.", 0, 0),
    ("The quarterly planning cycle starts {n} weeks before the end of each quarter.", 2, 6),
    ("Passwords must be at least {n} characters and are checked against known breaches.", 12, 16),
    ("Parental leave is {n} weeks at full pay, which may be taken in up to three blocks.", 12, 26),
    ("Support tickets marked urgent are answered within {n} hours, around the clock.", 1, 4),
    ("Contracts above {n} thousand euros are reviewed by the legal team before signature.", 25, 250),
    ("Backups are tested monthly by restoring a random sample of {n} accounts.", 10, 200),
    ("New hires receive a buddy for their first {n} weeks and a checklist in the HR portal.", 4, 12),
    ("The API rate limit for internal services is {n} requests per second per client.", 50, 2000),
    ("Personal data is deleted {n} days after an account is closed, unless the law requires otherwise.", 30, 90),
    ("Incidents are reviewed in a blameless post-mortem within {n} working days.", 2, 10),
)
DOCUMENT_TITLES = (
    "Remote work policy", "Travel and expenses", "Incident response handbook", "Data retention policy",
    "Engineering onboarding guide", "Information security standard", "Benefits overview", "Procurement rules",
)
RAG_QUESTIONS = (
    "How many days a week can I work from home?", "What is the deadline for expense reports?",
    "How quickly do we have to answer urgent tickets?", "Who approves travel bookings?",
    "How long is parental leave?", "When is customer data deleted after account closure?",
    "What do I need before deploying to production?", "How often are laptops replaced?",
    "What is the minimum password length?", "When are post-mortems held?",
    "What is the internal API rate limit?", "How long does the onboarding buddy programme last?",
)
BATCH_TASKS = (
    "Translate the following section of \"{title}\" into {language}. Keep the headings and formatting.\n\n{chunk}",
    "Summarise the following section of \"{title}\" in five bullet points for the staff newsletter.\n\n{chunk}",
    "Extract every deadline and number from this section of \"{title}\" as a JSON list of objects "
    "with fields \"what\" and \"value\".\n\n{chunk}",
)

ASSISTANT_SENTENCES = (
    "Sure, here is a step-by-step approach.", "The key idea is to keep the state in one place.",
    "You can verify this by running the tests again.", "This works because the loop stops early.",
    "In short, the answer depends on the input size.", "Let me know if you want a shorter version.",
    "First, check the configuration file for typos.", "Here is the updated version of the code.",
    "Note that this assumes the list is already sorted.", "The main trade-off is memory against speed.",
)

# Production apps behind one API key (api_customer): the system prompt each sends, with
# the date the app fills in, as many apps do. Invented, one per kind of product.
APP_SYSTEM_PROMPTS = (
    "You are Quill, a writing assistant inside a note-taking app. Help the user draft, shorten and polish "
    "their text. Keep their voice. Today is {date}.",
    "You are the shopping assistant of Lumen Home, an online furniture store. Answer questions about products, "
    "delivery and returns. Recommend at most three products. Current date: {date}.",
    "You are a friendly travel planner. Ask for missing details (dates, budget, who is travelling) before "
    "proposing an itinerary. Use metric units. Date: {date}.",
    "You are a patient language tutor. Correct the learner's mistakes gently, explain the rule in one "
    "sentence and give one more example. Today's date is {date}.",
    "You are an assistant for a small accounting firm. Answer in plain language, cite the relevant rule when "
    "you can, and say when a question needs a qualified accountant. Date: {date}.",
    "You help recruiters write job descriptions and outreach messages. Be concise, inclusive and specific. "
    "Today is {date}.",
    "You are a study helper for secondary-school students. Explain, don't just give answers; check "
    "understanding with a short question at the end. Date: {date}.",
    "You are the in-app assistant of a project-management tool. Help users plan tasks, write status updates "
    "and summarise discussions. The current date is {date}.",
)
DOCUMENT_SYSTEM_PROMPT = (
    "You are a document assistant. Answer only from the document the user provides; quote the passage you "
    "rely on. If the document does not say, say so. Today is {date}."
)
DOCUMENT_ASKS = (
    "Summarise this document in a few paragraphs.", "What are the key deadlines in this document?",
    "List every number in the document and what it refers to.", "Which rules here apply to new employees?",
    "Draft an email to my team explaining the main points.", "What changed compared to last year's version?",
    "Is there anything about remote work? Quote it.", "Turn the document into a checklist.",
    "Translate the first section into {language}.", "What would a new manager need to know from this?",
)
DOCUMENT_FOLLOW_UPS = (
    "Where exactly does it say that?", "And what about contractors?", "Make it shorter, please.",
    "Can you put that in a table?", "Does this conflict with anything else in the document?",
    "Thanks. Now write the email in a more formal tone.",
)
CODE_COMPLETION_SYSTEM_PROMPT = (
    "You are a code completion engine in an editor. Continue the code at the cursor. Reply with code only, "
    "no explanations, no markdown."
)

# How people ask a reasoning model to show its work. The first is DeepSeek's own usage
# recommendation for maths problems on DeepSeek-R1, which many users paste verbatim.
USER_REASONING_CUES = (
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "Think step by step.", "Let's think step by step.", "Show your work step by step.",
    "Explain your reasoning step by step before giving the answer.",
    "Can you walk me through it step by step?", "Please think carefully and explain each step.",
)
REASONING_FOLLOW_UPS = (
    "Are you sure? I got {n} when I tried it.", "Can you check the second step again?",
    "Why can't we just divide both sides there?", "Ok that makes sense. What if the numbers were doubled?",
    "Can you explain that last part more simply?", "Is there a faster way to solve it?",
    "That code fails on an empty input. Can you fix it?", "Could you prove that more rigorously?",
    "Thanks! Now can you write it in Python?", "I don't follow the jump from line 3 to line 4.",
)
