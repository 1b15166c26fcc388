"""Prompts shared by the feature and window tests."""

# Twenty prompts with nothing in common: no template, no shared task.
UNRELATED = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves falling on a quiet pond.",
    "Explain how a transistor works to a high school student.",
    "Give me a recipe for vegetarian lasagna that serves six people.",
    "Why is the sky blue during the day but red at sunset?",
    "Draft a polite email asking my landlord to fix the heating.",
    "What are the main differences between TCP and UDP?",
    "Suggest five names for a bakery that specialises in sourdough bread.",
    "How do I reverse a linked list in Python without recursion?",
    "Summarise the causes of the First World War in three paragraphs.",
    "Is it safe to eat raw cookie dough, and why or why not?",
    "Plan a three-day itinerary for a first visit to Kyoto in spring.",
    "Compare the pros and cons of renting versus buying a home.",
    "What does a product manager do on a typical day?",
    "Help me write a toast for my sister's wedding, funny but heartfelt.",
    "How many calories should an adult running marathons eat daily?",
    "Describe the water cycle using simple words for children.",
    "Convert this SQL query to use a LEFT JOIN instead of a subquery.",
    "What were the key ideas of the Enlightenment philosophers?",
    "My tomato plants have yellow leaves; what could be wrong with them?",
]
