"""One settings object: defaults here, overridable from a TOML file and from the CLI.

Every index manifest and every evaluation report embeds `Settings.to_dict()`, so a
figure can always be traced back to the configuration that produced it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rag.errors import ConfigError

DEFAULT_EMBED_MODEL = "intfloat/multilingual-e5-small"
API_KEY_ENV = ("RAG_LLM_API_KEY", "OPENAI_API_KEY")
LLM_KINDS = ("extractive", "openai", "ollama", "llamacpp")
LLM_QUESTIONS = ("all", "lists")
EMBED_BACKENDS = ("auto", "onnx", "torch")  # rag/embed/embedder.py
EMBED_DEVICES = ("auto", "cpu", "cuda")
MIN_CHUNK_SIZE = 20  # below it a chunk cannot hold one Chinese sentence


def _default_cache_dir() -> str:
    return os.environ.get("RAG_CACHE_DIR", str(Path.home() / ".cache" / "rag"))


def _default_home() -> str:
    return os.environ.get("RAG_HOME", ".rag")


def _default_index_dir() -> str:
    # "" means the knowledge base `default` of the home: HOME/index (`Settings.index_path`)
    return os.environ.get("RAG_INDEX", "")


ROLES = ("reader", "editor", "admin")


def check_store(uri: str) -> None:
    """`store` is "faiss" (the index folder's own files), a milvus-lite file (a path
    ending in .db) or a Milvus server (http://host:19530, https://..., milvus://host:port)."""
    if uri == "faiss" or uri.endswith(".db"):
        return
    u = urlsplit(uri)
    if u.scheme in ("http", "https", "milvus") and u.hostname:
        return
    raise ConfigError(
        f"store must be faiss, a milvus-lite file ending in .db, or a Milvus server address "
        f"such as http://localhost:19530, got {uri!r}"
    )


@dataclass(frozen=True)
class GeneratorSpec:
    """One generator the operator offers, by name: `[generators.NAME]` in the settings file.

    Chat sessions choose among these by name and can never give a URL, a model file or a
    key of their own: a key (read from `api_key_env`, never written in the file) is sent
    only to the `base_url` it is configured with.
    """

    name: str
    llm: str  # openai | ollama | llamacpp | extractive
    label: str = ""  # what the chat's settings list shows (default: the name)
    model: str | None = None
    base_url: str | None = None
    model_path: str | None = None
    chat_format: str | None = None
    api_key_env: str | None = None  # the environment variable holding this endpoint's key

    def __post_init__(self) -> None:
        where = f"generators.{self.name}"
        if not re.fullmatch(r"[\w.\-]{1,40}", self.name or ""):
            raise ConfigError(f"{where}: a generator name is 1-40 letters, digits, '-', '_', '.'")
        if self.llm not in LLM_KINDS:
            raise ConfigError(f"{where}: llm must be one of {', '.join(LLM_KINDS)}")
        check_base_url(self.base_url, where)

    @classmethod
    def from_dict(cls, name: str, d: Any) -> GeneratorSpec:
        if isinstance(d, GeneratorSpec):
            return d
        if not isinstance(d, dict):
            raise ConfigError(f"generators.{name}: expected a table of settings")
        if "api_key" in d:
            raise ConfigError(
                f"generators.{name}: a key is not written in the settings file; put it in an "
                "environment variable and name that variable in api_key_env"
            )
        unknown = set(d) - {f.name for f in fields(cls)} - {"name"}
        if unknown:
            raise ConfigError(f"generators.{name}: unknown key(s) {', '.join(sorted(unknown))}")
        return cls(name=name, **{k: v for k, v in d.items() if k != "name"})


def check_base_url(url: str | None, where: str) -> None:
    """An LLM endpoint must be http(s) with a host: no file://, no bare words."""
    if url is None:
        return
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ConfigError(f"{where}: base_url must be an http:// or https:// address, got {url!r}")


OIDC_CALLBACK = "auth/callback"  # the chat page's route the issuer sends the browser back to


def check_oidc(s: Settings) -> None:
    """An OIDC login needs its issuer as an address, its client and where it comes back."""
    check_base_url(s.oidc_issuer, "oidc_issuer")
    if not s.oidc_client_id:
        raise ConfigError("oidc_client_id: set it to the client id registered at the issuer")
    uri = s.oidc_redirect_uri or ""
    u = urlsplit(uri)
    if (
        u.scheme not in ("http", "https")
        or not u.hostname
        or not u.path.endswith("/" + OIDC_CALLBACK)
    ):
        raise ConfigError(
            f"oidc_redirect_uri: {uri[:200]!r} must be the chat page's address followed by "
            f"{OIDC_CALLBACK}, e.g. https://rag.example.org/{OIDC_CALLBACK}, registered at "
            "the issuer as the client's redirect URI"
        )
    if s.oidc_timeout_s <= 0:
        raise ConfigError("oidc_timeout_s must be more than 0 seconds")


@dataclass(frozen=True)
class Settings:
    # where things live: one home (--home, $RAG_HOME) holds the knowledge bases (HOME/index
    # is `default`, others HOME/kb/NAME), the accounts (HOME/org.db), the conversations
    # (HOME/history.db) and the audit log (HOME/audit.db); `index_dir` (--index, $RAG_INDEX)
    # names one index folder outside it
    home: str = field(default_factory=_default_home)
    index_dir: str = field(default_factory=_default_index_dir)
    cache_dir: str = field(default_factory=_default_cache_dir)
    # where the chunk vectors and BM25 postings are searched (rag/index/store.py): "faiss",
    # the index folder's own files; a path ending in .db, a milvus-lite file; or a Milvus
    # server, http://host:19530. The index folder keeps the catalogue either way.
    store: str = "faiss"
    # loading
    max_file_mb: float = 50.0
    clean: bool = True  # remove web clutter from .txt/.md/.html (rag/ingest/clean.py)
    ocr: bool = True  # read scanned PDF pages and images with rapidocr (rag/ingest/ocr.py)
    # chunking (defaults chosen by measurement, see README "Chunking")
    chunk_size: int = 300
    chunk_overlap: int = 1  # sentences carried over into the next chunk
    # embeddings
    embed_model: str = DEFAULT_EMBED_MODEL
    embed_batch_size: int = 32
    embed_device: str = "auto"  # auto: cuda when a GPU is present, else cpu
    # auto: int8 ONNX (onnxruntime) on CPU for a model the export reproduces (the default
    # e5 is one), sentence-transformers on a GPU and for every other model
    embed_backend: str = "auto"
    query_prefix: str | None = None  # None: chosen from the model name (e5 -> "query: ")
    passage_prefix: str | None = None
    embed_query_threads: int = 0  # torch threads for one query; 0: auto (rag/embed/embedder.py)
    # ingestion: BM25 segmenter of a new index (auto: rjieba if installed, else jieba; an
    # existing index keeps the one it was built with) and worker processes (0: auto, one
    # per core while a core is free; rag/index/hybrid.py)
    tokenizer: str = "auto"
    ingest_workers: int = 0
    # a Ray cluster that loads, segments and embeds instead (`rag ingest --ray ADDRESS`:
    # HOST:PORT of `ray start --head`, or "auto"; rag/index/executors.py); "": this machine
    ray_address: str = ""
    # an ingest with at least this many chunks to embed makes them searchable by keyword
    # (BM25) first and fills their vectors in after (rag/index/build.py); 0: never
    keyword_first_chunks: int = 512
    # vector index: exact search up to this many chunks, HNSW above
    ann_min_chunks: int = 200_000
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    # retrieval
    top_k: int = 5
    candidate_depth: int = 50
    # fusion "score": weighted sum of normalised evidence (weights below, chosen on the
    # CMRC tuning split, eval/reports/fusion.md); "rrf": weighted reciprocal rank fusion
    fusion: str = "score"
    rrf_k: int = 60
    dense_weight: float = 0.6
    bm25_weight: float = 0.4
    doc_bm25_weight: float = 0.1  # whole-document BM25 as a third signal
    coverage_weight: float = 0.2  # IDF-weighted share of query terms in the chunk (score only)
    number_weight: float = 0.2  # share of the query's numbers in the chunk (score only)
    # answer-aware rerank of the top `evidence_depth` fused chunks (score fusion only): add
    # these times the chunk's best sentence score as an answer (rag.read.reader) and its best
    # one that holds the asked kind of value and year. Chosen on the development sets
    # (CMRC tuning split, CMRC hard negatives, RGB); DRCD held out (eval/reports/fusion.md)
    evidence_depth: int = 10
    evidence_weight: float = 0.3
    evidence_fit_weight: float = 0.15
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    # answering
    llm: str = "extractive"  # extractive | openai | ollama | llamacpp
    llm_model: str | None = None
    llm_base_url: str | None = None
    llm_model_path: str | None = None
    llm_timeout_s: float = 60.0  # wall-clock budget for one LLM answer, retries included
    llm_retries: int = 1  # retries of a failed LLM call before its first token
    llm_temperature: float = 0.1
    llm_max_tokens: int = 512
    llm_context_window: int = 4096  # tokens; also bounds the passage text in the prompt
    llm_chat_format: str | None = None  # llamacpp: e.g. "gemma"; None: the GGUF's template
    # environment variables the key for llm_base_url is read from (first one set wins)
    llm_api_key_env: tuple[str, ...] = API_KEY_ENV
    # further generators a chat session may choose by name ([generators.NAME] tables);
    # the llm_* settings above are the default one
    generators: tuple[GeneratorSpec, ...] = ()
    # which questions the LLM answers (issue 21, eval/reports/llm/): "all", or "lists"
    # (哪些/有什么/经验/措施/总结…: it gathers a list's items better than quoting does; the
    # extractive answerer answers the rest, in milliseconds and more often right)
    llm_questions: str = "all"
    # follow-ups rewritten by the LLM when one answers, else the key-term carry-over (the
    # default: on eval/datasets/followups.jsonl its rewrites carried the expected terms in
    # 0.97 of follow-ups, the local 1.5B model's in 0.80; eval/reports/followups/llm/)
    llm_rewrite: bool = False
    grounding_threshold: float | None = None  # None: the calibrated one (rag/llm/grounding.py)
    max_answer_sentences: int = 3
    answer_max_chars: int = 110  # the quoted sentences together (about 85 on CMRC, 93 with markers)
    answer_second_ratio: float = 0.5  # another sentence joins if it scores this share of the best
    refusal_threshold: float | None = None  # None: the calibrated value (rag/refusal_model.json)
    # the trained cross-encoder (rag/read/answerability.py) reads question and evidence as a
    # feature of the refusal model; off: the lexical features alone (the model's own fit)
    answerability_model: bool = True
    # serving limits (rag/serve/limits.py); each refusal is one Chinese sentence
    max_question_chars: int = 2000
    max_comment_chars: int = 1000  # a feedback comment
    feedback_max_mb: float = 20.0  # feedback.jsonl is rotated past this size ...
    feedback_keep: int = 5  # ... keeping feedback.jsonl.1 ... .5
    uploads_per_hour: int = 60  # files one user (login name, else address) may upload
    upload_mb_per_hour: float = 500.0  # and their size, through the chat and the upload route
    upload_temp_keep_s: int = 900  # Gradio's temporary copies of uploads are deleted after this
    login_delay_s: float = 1.0  # a failed login waits this long; one try at a time per name
    # rag serve's APIs (rag/serve/service.py): requests per minute one key may make (0: no
    # limit; past it 429 with Retry-After), the size of one upload request to /api/documents,
    # and the browser origins allowed to call the APIs (CORS; none: no CORS headers at all)
    api_requests_per_minute: int = 120
    api_upload_max_mb: float = 200.0
    cors_origins: tuple[str, ...] = ()
    # accounts (rag/org/, docs/accounts.md). LDAP: a login binds as the DN `ldap_user_dn`
    # with {name} filled in; an account that binds is created with `ldap_default_role`
    ldap_url: str | None = None  # ldap://host:389 or ldaps://host:636
    ldap_user_dn: str = "uid={name},ou=people,dc=example,dc=org"
    ldap_start_tls: bool = False
    ldap_timeout_s: float = 5.0
    ldap_default_role: str = "reader"
    # OIDC (Keycloak, Authing, ...): the issuer's discovery document is at
    # {oidc_issuer}/.well-known/openid-configuration; the secret is read from the
    # environment variable `oidc_client_secret_env`, never written in the file; the
    # redirect URI is the chat page's address + auth/callback (rag.org.oidc)
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret_env: str = "RAG_OIDC_CLIENT_SECRET"
    oidc_redirect_uri: str | None = None
    oidc_scope: str = "openid profile email"
    oidc_username_claim: str = "preferred_username"
    oidc_timeout_s: float = 10.0  # each request to the issuer (discovery, keys, token)

    def __post_init__(self) -> None:
        if isinstance(self.generators, dict):
            specs = tuple(GeneratorSpec.from_dict(k, v) for k, v in self.generators.items())
            object.__setattr__(self, "generators", specs)
        elif not isinstance(self.generators, tuple):
            object.__setattr__(self, "generators", tuple(self.generators))
        if isinstance(self.llm_api_key_env, str | list):
            keys = (
                (self.llm_api_key_env,)
                if isinstance(self.llm_api_key_env, str)
                else self.llm_api_key_env
            )
            object.__setattr__(self, "llm_api_key_env", tuple(keys))
        if isinstance(self.cors_origins, str | list):
            origins = (
                [self.cors_origins] if isinstance(self.cors_origins, str) else self.cors_origins
            )
            object.__setattr__(self, "cors_origins", tuple(origins))
        for origin in self.cors_origins:
            u = urlsplit(origin)
            if origin != "*" and (u.scheme not in ("http", "https") or not u.hostname or u.path):
                raise ConfigError(
                    f"cors_origins: {origin!r} is not an origin; write it as https://host[:port]"
                )
        if self.api_requests_per_minute < 0:
            raise ConfigError("api_requests_per_minute must be 0 (no limit) or more")
        names = [g.name for g in self.generators]
        if len(set(names)) != len(names) or {"default", "extractive"} & set(names):
            raise ConfigError("generator names must be unique, and not 'default' or 'extractive'")
        if self.llm not in LLM_KINDS:
            raise ConfigError(f"unknown llm {self.llm!r}; choose one of {', '.join(LLM_KINDS)}")
        if self.llm_questions not in LLM_QUESTIONS:
            raise ConfigError(
                f"llm_questions must be one of {', '.join(LLM_QUESTIONS)}, not {self.llm_questions!r}"
            )
        check_base_url(self.llm_base_url, "llm_base_url")
        check_store(self.store)
        if self.embed_backend not in EMBED_BACKENDS:
            raise ConfigError(
                f"embed_backend must be one of {', '.join(EMBED_BACKENDS)}, got {self.embed_backend!r}"
            )
        if self.embed_device not in EMBED_DEVICES and not self.embed_device.startswith("cuda:"):
            raise ConfigError(
                f"embed_device must be auto, cpu, cuda or cuda:N, got {self.embed_device!r}"
            )
        if self.fusion not in ("score", "rrf"):
            raise ConfigError(f"fusion must be 'score' or 'rrf', got {self.fusion!r}")
        if self.chunk_size < MIN_CHUNK_SIZE:
            raise ConfigError(
                f"chunk_size must be at least {MIN_CHUNK_SIZE} characters, got {self.chunk_size}"
            )
        if self.chunk_overlap < 0:
            raise ConfigError(f"chunk_overlap must be 0 or more, got {self.chunk_overlap}")
        if self.ldap_default_role not in ROLES:
            raise ConfigError(f"ldap_default_role must be one of {', '.join(ROLES)}")
        if self.oidc_issuer:
            check_oidc(self)
        if self.evidence_depth < 0:
            raise ConfigError(
                f"evidence_depth must be 0 or more (0 turns the answer rerank off), "
                f"got {self.evidence_depth}"
            )

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied; None values are ignored (unset CLI flags)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # generators --------------------------------------------------------------
    def generator_choices(self) -> list[tuple[str, str]]:
        """(label, name) of every generator a session may choose: the offline extractive
        one, the configured default (when it is an LLM), then the named ones."""
        out = [("抽取式（离线）", "extractive")]
        if self.llm != "extractive":
            what = self.llm_model or Path(self.llm_model_path or "").name or self.llm
            out.append((f"默认大模型（{what}）", "default"))
        out += [(g.label or g.name, g.name) for g in self.generators]
        return out

    def current_generator(self) -> str:
        """The name (as in `generator_choices`) of the generator these settings use."""
        for g in self.generators:
            if self == self.with_generator(g.name):
                return g.name
        return "extractive" if self.llm == "extractive" else "default"

    def with_generator(self, name: str) -> Settings:
        """These settings answering with the configured generator `name`.

        Raises ConfigError for a name that is not configured: a session can only choose.
        """
        if name == "extractive":
            return dataclasses.replace(self, llm="extractive")
        if name == "default":
            if self.llm == "extractive":
                raise ConfigError("没有配置默认的大模型")
            return self
        spec = next((g for g in self.generators if g.name == name), None)
        if spec is None:
            raise ConfigError(f"没有名为“{name[:40]}”的生成方式；请从列表中选择")
        return dataclasses.replace(
            self,
            llm=spec.llm,
            llm_model=spec.model,
            llm_base_url=spec.base_url,
            llm_model_path=spec.model_path,
            llm_chat_format=spec.chat_format,
            llm_api_key_env=(spec.api_key_env,) if spec.api_key_env else (),
        )

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, **overrides: Any) -> Settings:
        """Defaults, then the TOML file at `path` (or $RAG_CONFIG), then `overrides`."""
        s = cls()
        path = path or os.environ.get("RAG_CONFIG")
        if path:
            p = Path(path)
            try:
                data = tomllib.loads(p.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ConfigError(f"{p}: settings file not found") from None
            except tomllib.TOMLDecodeError as e:
                raise ConfigError(f"{p}: not valid TOML ({e})") from None
            if isinstance(data.get("rag"), dict):  # a [rag] table, or top-level keys
                data = {**data["rag"], **{k: data[k] for k in ("generators",) if k in data}}
            s = s.replace(**data)
        return s.replace(**overrides)

    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser()

    @property
    def index_path(self) -> Path:
        """The index folder: `index_dir` when set, else the home's knowledge base `default`."""
        if self.index_dir:
            return Path(self.index_dir).expanduser()
        return self.home_path / "index"

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser()


def api_key(env: tuple[str, ...] = API_KEY_ENV) -> str | None:
    """The API key from the first of `env` that is set (default $RAG_LLM_API_KEY, else
    $OPENAI_API_KEY); None when none is."""
    for name in env:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None
