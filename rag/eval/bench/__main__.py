import sys

# `python -m rag.eval.bench [options]`: the speed and scale benchmark (bench/run.py);
# `python -m rag.eval.bench ocr|formats [options]`: reading scans, reading each file type.
SUBCOMMANDS = {
    "ocr": "rag.eval.bench.ocr",
    "formats": "rag.eval.bench.formats",
    "agreement": "rag.eval.bench.agreement",  # int8 ONNX vectors against float32 torch
    "ingest_speed": "rag.eval.bench.ingest_speed",  # articles/s, torch against ONNX
    "query_embed": "rag.eval.bench.query_embed",  # warm query embedding, ONNX against torch
}

if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
    import importlib

    sys.exit(importlib.import_module(SUBCOMMANDS[sys.argv[1]]).main(sys.argv[2:]))

from rag.eval.bench.run import main  # noqa: E402

sys.exit(main())
