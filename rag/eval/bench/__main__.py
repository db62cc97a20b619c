import sys

# `python -m rag.eval.bench [options]`: the speed and scale benchmark (bench/run.py);
# `python -m rag.eval.bench ocr|formats|injection [options]`: reading scans, reading each file
# type, planted instructions against a real local model;
# `python -m rag.eval.bench serve_load [options]`: concurrent streamed chats on `rag serve`;
# `python -m rag.eval.bench org [options]`: many accounts asking knowledge bases at once;
# `python -m rag.eval.bench stores|store_scale [options]`: FAISS against milvus-lite query
# latency, and its cost against corpus size (10k to 1M chunks, with a plot);
# `python -m rag.eval.bench agreement|ingest_speed|query_embed|query_profile`: the int8
# ONNX embedder;
# `python -m rag.eval.bench ray_ingest`: ingestion over Ray workers;
# `python -m rag.eval.bench sheet_speed|pdf_text`: how soon a large spreadsheet is
# searchable, and reading a text PDF.
SUBCOMMANDS = {
    "ocr": "rag.eval.bench.ocr",
    "formats": "rag.eval.bench.formats",
    "injection": "rag.eval.bench.injection",
    "serve_load": "rag.eval.bench.serve_load",
    "org": "rag.eval.bench.org",
    "stores": "rag.eval.bench.stores",  # FAISS vs milvus-lite query latency
    "store_scale": "rag.eval.bench.store_scale",  # the same against corpus size, 10k to 1M
    "agreement": "rag.eval.bench.agreement",  # int8 ONNX vectors against float32 torch
    "ingest_speed": "rag.eval.bench.ingest_speed",  # articles/s, torch against ONNX
    "query_embed": "rag.eval.bench.query_embed",  # warm query embedding, ONNX against torch
    "query_profile": "rag.eval.bench.query_profile",  # where a query's embedding time goes
    "ray_ingest": "rag.eval.bench.ray_ingest",  # rag ingest --ray: the per-worker rate
    "sheet_speed": "rag.eval.bench.sheet_speed",  # a 10,000-row sheet: searchable, embedded
    "pdf_text": "rag.eval.bench.pdf_text",  # reading a text PDF, one checkout against another
}

if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
    import importlib

    sys.exit(importlib.import_module(SUBCOMMANDS[sys.argv[1]]).main(sys.argv[2:]))

from rag.eval.bench.run import main  # noqa: E402

sys.exit(main())
