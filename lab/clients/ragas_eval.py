"""A ragas LLM-as-judge evaluation of a RAG app (honest evaluation work).

The team runs its docs assistant on an evaluation set (retrieve, answer), then ragas
judges every answer: faithfulness, response relevancy and context precision, each a few
judge calls per sample. The metrics' NaN scores (judge output ragas could not use) are
client-side errors.
"""

import math

from _common import MODEL, REPO, RESULT, main, param, rows


def run() -> None:
    from langchain_community.retrievers import BM25Retriever
    from langchain_core.documents import Document
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from ragas import EvaluationDataset, RunConfig, SingleTurnSample, evaluate
    from ragas.embeddings import LangchainEmbeddingsWrapper
    from ragas.llms import LangchainLLMWrapper
    from ragas.metrics import Faithfulness, LLMContextPrecisionWithoutReference, ResponseRelevancy

    docs = [Document(page_content=p.read_text()) for p in sorted((REPO / "docs").glob("*.md"))]
    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100).split_documents(docs)
    retriever = BM25Retriever.from_documents(chunks, k=3)
    chat = ChatOpenAI(model=MODEL, max_tokens=param("max_tokens", 1024), temperature=param("temperature", 0.0),
                      max_retries=2)
    samples = []
    for row in rows("rag_questions.jsonl")[:param("samples", 30)]:
        contexts = [d.page_content for d in retriever.invoke(row["question"])]
        prompt = "Answer from the context.\n\n" + "\n---\n".join(contexts) + f"\n\nQuestion: {row['question']}"
        answer = chat.invoke(prompt).content
        samples.append(SingleTurnSample(user_input=row["question"], retrieved_contexts=contexts, response=answer))
    judge = LangchainLLMWrapper(chat)
    embeddings = LangchainEmbeddingsWrapper(OpenAIEmbeddings(model="sim-embed", check_embedding_ctx_length=False))
    result = evaluate(EvaluationDataset(samples=samples),
                      metrics=[Faithfulness(), ResponseRelevancy(), LLMContextPrecisionWithoutReference()],
                      llm=judge, embeddings=embeddings, show_progress=False,
                      run_config=RunConfig(max_workers=param("max_workers", 8), max_retries=2, timeout=300))
    for record in result.scores:
        for metric, value in record.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                RESULT.error(f"{metric}: no score")
            else:
                RESULT.ok()


main(run)
