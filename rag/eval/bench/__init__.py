"""Speed, memory and scale benchmark of `rag` (issue 7); run it with `python -m rag.eval.bench`.

The package is a set of small phases, each run in its own child process so that its
peak memory is its own: corpus preparation (`corpus`), stand-in passage vectors
(`surrogate`), measuring helpers (`measure`), our system's phases (`phases`), the
llama-index baseline (`baseline`), the exact-vs-approximate vector search comparison
(`ann`), the orchestrator (`run`) and the markdown report (`report`).
"""
