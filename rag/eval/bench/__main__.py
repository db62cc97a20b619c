import sys

# `python -m rag.eval.bench [options]`: the speed and scale benchmark (bench/run.py);
# `python -m rag.eval.bench ocr|formats|injection [options]`: reading scans, reading each file
# type, planted instructions against a real local model;
# `python -m rag.eval.bench serve_load [options]`: concurrent streamed chats on `rag serve`;
# `python -m rag.eval.bench org [options]`: many accounts asking knowledge bases at once;
# `python -m rag.eval.bench stores [options]`: FAISS against milvus-lite query latency;
# `python -m rag.eval.bench agreement|ingest_speed|query_embed`: the int8 ONNX embedder;
# `python -m rag.eval.bench sheet_speed`: how soon a large spreadsheet is searchable.
SUBCOMMANDS = {
    "ocr": "rag.eval.bench.ocr",
    "formats": "rag.eval.bench.formats",
    "injection": "rag.eval.bench.injection",
    "serve_load": "rag.eval.bench.serve_load",
    "org": "rag.eval.bench.org",
    "stores": "rag.eval.bench.stores",  # FAISS vs milvus-lite query latency
    "agreement": "rag.eval.bench.agreement",  # int8 ONNX vectors against float32 torch
    "ingest_speed": "rag.eval.bench.ingest_speed",  # articles/s, torch against ONNX
    "query_embed": "rag.eval.bench.query_embed",  # warm query embedding, ONNX against torch
    "sheet_speed": "rag.eval.bench.sheet_speed",  # a 10,000-row sheet: searchable, embedded
    "pdf_text": "rag.eval.bench.pdf_text",  # reading a text PDF, one checkout against another
}

if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
    import importlib

    sys.exit(importlib.import_module(SUBCOMMANDS[sys.argv[1]]).main(sys.argv[2:]))

from rag.eval.bench.run import main  # noqa: E402

sys.exit(main())
