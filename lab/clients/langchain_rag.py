"""A LangChain RAG app over distillguard's docs: BM25 retrieval, a grounded prompt, ChatOpenAI.

Users ask about the product; the app retrieves k passages from docs/*.md and answers
from them (LCEL chain, `batch` with max_concurrency), as a support assistant would.
"""

from _common import MODEL, REPO, RESULT, main, param, rows

SYSTEM = ("You are distillguard's documentation assistant. Answer only from the context; say so when "
          "the context does not contain the answer.")


def passages() -> list:
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    docs = [Document(page_content=p.read_text(), metadata={"source": p.name}) for p in sorted((REPO / "docs").glob("*.md"))]
    return RecursiveCharacterTextSplitter(chunk_size=1200, chunk_overlap=150).split_documents(docs)


def run() -> None:
    from langchain_community.retrievers import BM25Retriever
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_openai import ChatOpenAI

    retriever = BM25Retriever.from_documents(passages(), k=param("k", 4))
    llm = ChatOpenAI(model=MODEL, max_tokens=param("max_tokens", 512), temperature=param("temperature", 0.0),
                     max_retries=2)
    human = "Context:\n{context}\n\nQuestion: {question}"
    if param("system", True):
        prompt = ChatPromptTemplate.from_messages([("system", SYSTEM), ("human", human)])
    else:
        prompt = ChatPromptTemplate.from_messages([("human", SYSTEM + "\n\n" + human)])
    chain = prompt | llm | StrOutputParser()
    questions = [r["question"] for r in rows("rag_questions.jsonl")][:param("questions", 113)]
    inputs = [{"question": q, "context": "\n\n---\n\n".join(d.page_content for d in retriever.invoke(q))}
              for q in questions]
    answers = chain.batch(inputs, config={"max_concurrency": param("concurrency", 4)}, return_exceptions=True)
    for answer in answers:
        if isinstance(answer, Exception):
            RESULT.error(answer)
        else:
            RESULT.ok()


main(run)
