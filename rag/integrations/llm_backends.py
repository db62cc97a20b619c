"""The LLM backends named by `Settings.llm`, built with llama-index and returned as
`LlamaIndexGenerator`s: `openai` (any OpenAI-compatible endpoint, `OpenAILike`),
`ollama`, and `llamacpp` (a local GGUF file through llama.cpp's chat templates).

Each integration package is imported only when its backend is asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.config import Settings, api_key
from rag.errors import ConfigError, ModelError
from rag.integrations.llama_index import LlamaIndexGenerator

DEFAULT_OPENAI_BASE = "https://api.openai.com/v1"
DEFAULT_OLLAMA_BASE = "http://localhost:11434"

INSTALL_HINT = {
    "openai": "pip install llama-index-llms-openai-like",
    "ollama": "pip install llama-index-llms-ollama",
    "llamacpp": 'pip install llama-index-llms-llama-cpp "llama-cpp-python==0.3.36"',
}


def _import(kind: str, module: str, name: str):
    try:
        mod = __import__(module, fromlist=[name])
    except ImportError as e:
        raise ModelError(f"llm = {kind} needs {module} ({e}); {INSTALL_HINT[kind]}") from None
    return getattr(mod, name)


def make_llm(settings: Settings) -> LlamaIndexGenerator | None:
    """The generator named by `settings.llm` (a llama-index LLM in a
    `LlamaIndexGenerator`), or None for `extractive`.

    Nothing is contacted here: a server that is down shows up at answer time, as a
    fallback to the extractive answer. Configuration mistakes raise `ConfigError`; a
    missing package raises `ModelError` with the pip command.
    """
    kind = settings.llm  # one of LLM_KINDS: Settings checks it
    if kind == "extractive":
        return None
    if kind == "openai":
        if not settings.llm_model:
            raise ConfigError("llm = openai needs a model name: --llm-model NAME (llm_model)")
        base = settings.llm_base_url or DEFAULT_OPENAI_BASE
        key = api_key(settings.llm_api_key_env)
        if not key and base.rstrip("/") == DEFAULT_OPENAI_BASE:
            raise ConfigError(
                "llm = openai at api.openai.com needs an API key: set $RAG_LLM_API_KEY "
                "(or $OPENAI_API_KEY), or give --llm-base-url for a local server"
            )
        return openai_like(
            settings.llm_model,
            base,
            key,
            timeout_s=settings.llm_timeout_s,
            temperature=settings.llm_temperature,
            max_tokens=settings.llm_max_tokens,
            context_window=settings.llm_context_window,
        )
    if kind == "ollama":
        if not settings.llm_model:
            raise ConfigError("llm = ollama needs a model name: --llm-model NAME (e.g. qwen2.5:7b)")
        Ollama = _import(kind, "llama_index.llms.ollama", "Ollama")
        llm = Ollama(
            model=settings.llm_model,
            base_url=(settings.llm_base_url or DEFAULT_OLLAMA_BASE).removesuffix("/v1"),
            temperature=settings.llm_temperature,
            context_window=settings.llm_context_window,
            request_timeout=settings.llm_timeout_s,
            additional_kwargs={"num_predict": settings.llm_max_tokens},
        )
        return LlamaIndexGenerator(llm)
    # llamacpp
    path = settings.llm_model_path
    if not path:
        raise ConfigError(
            "llm = llamacpp needs a GGUF file: --llm-model-path FILE (llm_model_path)"
        )
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{p}: GGUF model file not found (llm_model_path)")
    cls = _chat_llamacpp_class()
    with _without_extra_buffer_types():
        llm = cls(
            model_path=str(p),
            temperature=settings.llm_temperature,
            max_new_tokens=settings.llm_max_tokens,
            context_window=settings.llm_context_window,
            model_kwargs=(
                {"chat_format": settings.llm_chat_format} if settings.llm_chat_format else {}
            ),
            verbose=False,
        )
    return LlamaIndexGenerator(llm, serial=True)


def openai_like(
    model: str,
    base_url: str,
    api_key: str | None,
    timeout_s: float,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    context_window: int = 4096,
    json_mode: bool = False,
) -> LlamaIndexGenerator:
    """The one client for OpenAI-compatible servers (answers, and the eval's judge):
    llama-index's OpenAILike, without retries of its own (callers retry uniformly)."""
    OpenAILike = _import("openai", "llama_index.llms.openai_like", "OpenAILike")
    llm = OpenAILike(
        model=model,
        api_base=base_url,
        api_key=api_key or "no-key",  # local servers ignore it; the client needs one
        is_chat_model=True,
        context_window=context_window,
        temperature=temperature,
        max_tokens=max_tokens,
        timeout=timeout_s,
        max_retries=0,
        reuse_client=False,  # a client per call: an abandoned stream cannot block the next
        additional_kwargs={"response_format": {"type": "json_object"}} if json_mode else {},
    )
    return LlamaIndexGenerator(llm)


_SHARED: dict[tuple, LlamaIndexGenerator | None] = {}
_SHARED_LOCK = threading.Lock()


def generator_key(settings: Settings) -> tuple:
    """What makes two settings' generators the same: kind, endpoint, model, sampling, and
    the key in force (a rotated key gets a new client; the key itself is not kept here)."""
    key = api_key(settings.llm_api_key_env) or ""
    return (
        hashlib.sha256(key.encode()).hexdigest() if key else "",
        settings.llm,
        settings.llm_model,
        settings.llm_base_url,
        settings.llm_model_path,
        settings.llm_chat_format,
        settings.llm_api_key_env,
        settings.llm_temperature,
        settings.llm_max_tokens,
        settings.llm_context_window,
        settings.llm_timeout_s,
    )


def shared_llm(settings: Settings) -> LlamaIndexGenerator | None:
    """`make_llm(settings)`, built once per process for each configured generator.

    Every chat session that chooses the same generator gets the same object, so a GGUF
    model is loaded once however many sessions use it (its calls are serialised).
    """
    key = generator_key(settings)
    with _SHARED_LOCK:  # one load at a time: two sessions never load the same file twice
        if key not in _SHARED:
            _SHARED[key] = make_llm(settings)
        return _SHARED[key]


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_extra_buffer_types() -> Iterator[None]:
    """Load llama.cpp models with `use_extra_bufts = False`.

    llama-cpp-python 0.3.36 segfaults on any decode of two or more tokens on CPUs with
    AVX-512 + AMX when weights are repacked into the extra CPU buffer types (these
    machines' CPUs). `Llama()` does not expose the field, so the default-params factory
    it calls is wrapped while the model loads.
    """
    try:
        import llama_cpp.llama_cpp as lc
    except ImportError:  # the backend's own import error says what to install
        yield
        return
    with _PARAMS_LOCK:
        original = lc.llama_model_default_params

        def params():
            p = original()
            if hasattr(p, "use_extra_bufts"):
                p.use_extra_bufts = False
            return p

        lc.llama_model_default_params = params
        try:
            yield
        finally:
            lc.llama_model_default_params = original


NO_SYSTEM_ROLE = frozenset({"gemma"})  # llama.cpp chat formats without a system role


def _chat_llamacpp_class():
    """llama-index's LlamaCPP, with chat going through llama.cpp's own chat templates.

    The stock class formats chat messages with a Llama-2 prompt; llama.cpp knows each
    model's template (from the GGUF, or by `chat_format`, e.g. "gemma") and its stop words.
    """
    LlamaCPP = _import("llamacpp", "llama_index.llms.llama_cpp", "LlamaCPP")
    from llama_index.core.llms import ChatMessage, ChatResponse

    class ChatLlamaCPP(LlamaCPP):
        @classmethod
        def class_name(cls) -> str:
            return "ChatLlamaCPP"

        def dicts(self, messages) -> list[dict]:
            out = [{"role": m.role.value, "content": m.content or ""} for m in messages]
            if self.model_kwargs.get("chat_format") in NO_SYSTEM_ROLE:
                # these formats drop a system message: put the rules in the first user turn
                system = "\n\n".join(d["content"] for d in out if d["role"] == "system")
                out = [d for d in out if d["role"] != "system"]
                if system and out:
                    out[0] = {**out[0], "content": f"{system}\n\n{out[0]['content']}"}
            return out

        def chat(self, messages, **kwargs: Any):
            out = self._model.create_chat_completion(
                messages=self.dicts(messages),
                temperature=self.temperature,
                max_tokens=self.max_new_tokens,
            )
            text = out["choices"][0]["message"].get("content") or ""
            return ChatResponse(message=ChatMessage(role="assistant", content=text), raw=out)

        def stream_chat(self, messages, **kwargs: Any):
            chunks = self._model.create_chat_completion(
                messages=self.dicts(messages),
                temperature=self.temperature,
                max_tokens=self.max_new_tokens,
                stream=True,
            )

            def gen():
                text = ""
                for chunk in chunks:
                    delta = chunk["choices"][0]["delta"].get("content") or ""
                    text += delta
                    yield ChatResponse(
                        message=ChatMessage(role="assistant", content=text), delta=delta, raw=chunk
                    )

            return gen()

    return ChatLlamaCPP
