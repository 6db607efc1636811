"""Model: the weights and tokenizer (kl_model)."""

from __future__ import annotations

import json
import numbers
import os
import weakref
from ctypes import byref, c_size_t, create_string_buffer, sizeof, string_at
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _native
from ._handle import ModelHandle, Share, read_ids
from ._progress import ProgressRelay
from ._session import Session
from ._types import ChatMessage, ModelInfo, text_bytes, token_buffer, token_pointer
from .errors import KL_ERR_INVALID_ARGUMENT, KL_ERR_UNSUPPORTED, KL_OK, check

_DEVICES = {"auto": _native.KL_DEVICE_AUTO, "cpu": _native.KL_DEVICE_CPU,
            "cuda": _native.KL_DEVICE_CUDA}


def _device_code(device: str) -> int:
    if isinstance(device, str):
        try:
            return _DEVICES[device.lower()]
        except KeyError:
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', not {device!r}") from None
    raise TypeError(f"device must be a str ('auto', 'cpu' or 'cuda'), not "
                    f"{type(device).__name__}")


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} is {value}, must be in [{lo}, {hi}]")
    return int(value)


def _c_text(value: Any, what: str) -> bytes:
    """UTF-8 bytes for a NUL-terminated C string argument."""
    if isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    else:
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if b"\0" in data:
        raise ValueError(f"{what} contains a NUL character")
    return data


def _chat_messages(messages) -> Tuple[Any, int, List[Tuple[bytes, bytes]]]:
    """A kl_chat_message array (at least one element), its count and the (role, content)
    UTF-8 pairs it points into (keep them alive while the array is used)."""
    if isinstance(messages, (str, bytes, Mapping)):
        raise TypeError("messages must be a list of messages (dicts or (role, content) "
                        "tuples)")
    pairs = []
    for i, message in enumerate(messages):
        if isinstance(message, Mapping):
            try:
                role, content = message["role"], message["content"]
            except KeyError as e:
                raise ValueError(f"messages[{i}] has no {e.args[0]!r} key") from None
        elif isinstance(message, Sequence) and not isinstance(message, (str, bytes)) \
                and len(message) == 2:
            role, content = message
        else:
            raise TypeError(f"messages[{i}] must be a dict with 'role' and 'content' or a "
                            f"(role, content) pair, not {type(message).__name__}")
        pairs.append((_c_text(role, f"messages[{i}] role"),
                      _c_text(content, f"messages[{i}] content")))
    n = len(pairs)
    msgs = (_native.kl_chat_message * max(n, 1))()
    for i, (role, content) in enumerate(pairs):
        msgs[i].role = role
        msgs[i].content = content
    return msgs, n, pairs


def _text_call(call, guess: int) -> str:
    """Run a text-producing C call ``call(lib, out, cap, &len)``, retrying once at the size
    the library reports (KL_ERR_INVALID_ARGUMENT with the needed length in *len)."""
    lib = _native.lib()
    length = c_size_t(0)
    cap = max(guess, 1)
    for _ in range(3):
        buf = create_string_buffer(cap)
        status = call(lib, buf, cap, byref(length))
        if status in (KL_OK, KL_ERR_INVALID_ARGUMENT) and length.value > cap:  # too small
            cap = length.value + 1  # and room for the NUL
            continue
        check(status)
        return string_at(buf, length.value).decode("utf-8", "replace")
    raise AssertionError("the library kept asking for a larger buffer")  # pragma: no cover


_WEIGHT_FORMATS = {"auto": _native.KL_WEIGHTS_AUTO, "bf16": _native.KL_WEIGHTS_BF16,
                   "fp8": _native.KL_WEIGHTS_FP8, "int4": _native.KL_WEIGHTS_INT4}


def _path_bytes(path: Any, what: str) -> bytes:
    """The file system bytes of a str / bytes / os.PathLike argument (no NUL)."""
    if isinstance(path, (str, bytes)) or hasattr(path, "__fspath__"):
        raw = os.fsencode(path)
    else:
        raise TypeError(f"{what} must be a str or os.PathLike, not {type(path).__name__}")
    if b"\0" in raw:
        raise ValueError(f"{what} contains a NUL character")
    return raw


def _device_list(devices: Optional[Sequence[int]]) -> List[int]:
    """The ordinals of devices= (None: none); the library checks the list itself."""
    if devices is None:
        return []
    if isinstance(devices, (str, bytes)) or not isinstance(devices, Iterable):
        raise TypeError(f"devices must be a sequence of ints or None, not "
                        f"{type(devices).__name__}")
    return [_check_int(f"devices[{i}]", d, -2 ** 31, 2 ** 31 - 1) for i, d in enumerate(devices)]


def _weight_format_code(weights: str, what: str = "weights") -> int:
    if not isinstance(weights, str):
        raise TypeError(f"{what} must be a str, not {type(weights).__name__}")
    if weights not in _WEIGHT_FORMATS:
        raise ValueError(f"{what} must be one of {', '.join(_WEIGHT_FORMATS)}, not {weights!r}")
    return _WEIGHT_FORMATS[weights]


def quantize_checkpoint(in_dir: Union[str, "os.PathLike[str]"],
                        out_dir: Union[str, "os.PathLike[str]"], format: str,
                        shard_bytes: int = 0,
                        progress: Optional[Callable[[float], Any]] = None) -> None:
    """Write the bf16 checkpoint folder ``in_dir`` to ``out_dir`` with its linear weights
    quantized (kl_checkpoint_quantize; the CLI's ``kimi quantize``).

    ``format`` is "fp8" (Hugging Face fine-grained FP8, 128x128 block scales) or "int4"
    (compressed-tensors pack-quantized, group 128): the weights as a load with
    ``weights=format`` holds them, so ``Model(out_dir)`` (``weights="auto"``) runs the same
    logits as ``Model(in_dir, weights=format)``. The tensors go to shards of at most
    ``shard_bytes`` bytes (0: 4 GiB) with model.safetensors.index.json; config.json gets its
    quantization_config and the other files are copied. ``out_dir`` is created, or must be
    empty.

    ``progress(fraction)`` is called on this thread during the write (kl_progress_callback:
    the share of the tensors' bytes read and written, rising after each tensor, exactly 1.0
    once ``out_dir`` is complete); returning False cancels it (CancelledError); an exception
    raised in it cancels it and is re-raised. A cancelled write is a failed one, below.

    Raises the library's error with its status: InvalidArgumentError for a non-empty
    ``out_dir``, ``out_dir`` equal to ``in_dir``, or a format other than "fp8" and "int4";
    IoError (an ``OSError``) for an ``in_dir`` that is not a model folder (no config.json) or
    an ``out_dir`` that cannot be written; FormatError for a malformed checkpoint. A failed
    call leaves nothing behind (the files it wrote, and ``out_dir`` if it made it, are
    removed). The GIL is released while it runs.
    """
    src = _path_bytes(in_dir, "in_dir")
    dst = _path_bytes(out_dir, "out_dir")
    code = _weight_format_code(format, "format")  # "auto", "bf16": the library refuses them
    shard_bytes = _check_int("shard_bytes", shard_bytes, 0, 2 ** 64 - 1)
    relay = ProgressRelay(progress)
    status = _native.lib().kl_checkpoint_quantize_with_progress(src, dst, code, shard_bytes,
                                                                relay.callback, None)
    relay.reraise()
    check(status)


class Model:
    """A loaded Kimi Linear checkpoint (weights + tokenizer), immutable after loading.

    ``Model(path, device="auto", device_index=0, threads=0, progress=None, max_batch=0,
    batch_wait_us=0, weights="auto", devices=None)`` loads a Hugging Face style folder
    (config.json, *.safetensors, tokenizer files if present). ``threads=0`` uses all hardware
    threads. ``progress(fraction)`` is called during the load; returning False cancels it
    (CancelledError); an exception raised in it cancels the load and is re-raised.

    ``max_batch > 1`` batches decode steps across threads (kl_model_params): one-token steps
    of this model's sessions that run at the same time on different threads (next(),
    generate() steps) share one forward pass of up to max_batch sessions, each keeping its own
    results; ``batch_wait_us`` is how long a step waits for the others (at most 1000000).
    0 or 1 (the default): each step runs alone. To step several sessions from one thread, use
    Batch.

    ``weights`` is the linear weights' form once loaded (kl_weight_format): "auto" as the
    checkpoint stores them, "bf16" (dequantized), "fp8" or "int4" (a bf16 checkpoint
    quantized on load; docs/design/model.md "Quantized weights").

    ``devices`` lists the devices the model is split over, one shard each (kl_model_params
    devices, at most 8; ``info.n_devices`` reports it): None (the default) = one device,
    ``device_index``. On the CPU, ``[0, 1, ..., n-1]`` runs n shards on threads (a check of
    the split, no faster); on CUDA the entries are GPU ordinals, and more than one raises
    UnsupportedError unless the environment has KL_CUDA_SHARDS=1 (CUDA shards over NCCL are
    built but not yet verified on several GPUs). A bad list (more than 8, a
    negative or repeated ordinal) raises InvalidArgumentError; a count that does not divide
    the model's heads, widths or experts UnsupportedError.

    A model is safe to share between threads and sessions. Use it as a context manager or
    call close(); sessions made from it stay usable after it is closed.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], device: str = "auto",
                 device_index: int = 0, threads: int = 0,
                 progress: Optional[Callable[[float], Any]] = None, max_batch: int = 0,
                 batch_wait_us: int = 0, weights: str = "auto",
                 devices: Optional[Sequence[int]] = None) -> None:
        self._handle: Optional[ModelHandle] = None
        raw = _path_bytes(path, "path")
        self._path: Optional[str] = os.fsdecode(raw)
        self._create(lambda lib, params, out: lib.kl_model_load(raw, params, out),
                     device, device_index, threads, progress, max_batch, batch_wait_us, weights,
                     devices)

    @classmethod
    def random(cls, config_json: Union[str, bytes, Mapping[str, Any]], seed: int = 0,
               device: str = "auto", device_index: int = 0, threads: int = 0,
               progress: Optional[Callable[[float], Any]] = None, max_batch: int = 0,
               batch_wait_us: int = 0, weights: str = "auto",
               devices: Optional[Sequence[int]] = None) -> "Model":
        """A model with deterministic random weights for a config.json text (or a dict).

        Built directly in the backend's memory, no files; the values are those
        make_tiny_model writes for the same seed. Such a model has no tokenizer.
        """
        if isinstance(config_json, Mapping):
            config_json = json.dumps(config_json)
        text = _c_text(config_json, "config_json")
        seed = _check_int("seed", seed, 0, 2 ** 64 - 1)
        self = cls.__new__(cls)
        self._handle = None
        self._path = None
        self._create(lambda lib, params, out: lib.kl_model_create_random(text, seed, params, out),
                     device, device_index, threads, progress, max_batch, batch_wait_us, weights,
                     devices)
        return self

    def _create(self, call, device, device_index, threads, progress, max_batch,
                batch_wait_us, weights, devices) -> None:
        """call(lib, kl_model_params, kl_model**) -> kl_status: load or create the model."""
        code = _device_code(device)
        device_index = _check_int("device_index", device_index, 0, 2 ** 31 - 1)
        threads = _check_int("threads", threads, 0, 2 ** 31 - 1)
        # The C field's range here; the library's own limits (kl_model_params) there.
        max_batch = _check_int("max_batch", max_batch, 0, 2 ** 32 - 1)
        batch_wait_us = _check_int("batch_wait_us", batch_wait_us, 0, 2 ** 32 - 1)
        weight_format = _weight_format_code(weights)
        device_list = _device_list(devices)
        relay = ProgressRelay(progress)
        lib = _native.lib()
        params = _native.kl_model_params()
        check(lib.kl_model_params_init(params, sizeof(params)))
        params.device = code
        params.device_index = device_index
        params.n_threads = threads
        params.max_batch = max_batch
        params.batch_wait_us = batch_wait_us
        params.weight_format = weight_format
        # More than KL_MAX_DEVICES: the count goes as it is, the library refuses it.
        params.n_devices = len(device_list)
        for i, d in enumerate(device_list[:_native.KL_MAX_DEVICES]):
            params.devices[i] = d
        params.progress_cb = relay.callback  # the relay outlives the call
        ptr = _native.kl_model_p()
        status = call(lib, params, byref(ptr))
        if relay.raised:
            if ptr:
                lib.kl_model_free(ptr)
            relay.reraise()
        check(status)
        self._handle = ModelHandle(ptr)
        self._finalizer = weakref.finalize(self, self._handle.release)
        self._info = self._query_info()
        self._has_tokenizer = self._query_tokenizer()

    # ---- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        """Release the model. Idempotent. Sessions made from it keep working."""
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()

    @property
    def closed(self) -> bool:
        finalizer = getattr(self, "_finalizer", None)
        return finalizer is None or not finalizer.alive

    def __enter__(self) -> "Model":
        if self.closed:
            raise ValueError("model is closed")
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _use(self) -> Share:
        """A share of the handle for the duration of a call (``with self._use() as ptr``)."""
        if self.closed or self._handle is None:
            raise ValueError("model is closed")
        return self._handle.share()

    def __repr__(self) -> str:
        if self.closed:
            return "<kimi_linear.Model (closed)>"
        i = self._info
        where = f" path={self._path!r}" if self._path else " random"
        return (f"<kimi_linear.Model{where} device={i.device} layers={i.n_layers} "
                f"vocab={i.vocab_size}>")

    # ---- information --------------------------------------------------------------------

    def _query_info(self) -> ModelInfo:
        info = _native.kl_model_info()
        info.struct_size = sizeof(info)
        with self._use() as ptr:
            check(_native.lib().kl_model_info(ptr, byref(info)))
        return ModelInfo._from_c(info)

    def _query_tokenizer(self) -> bool:
        length = c_size_t(0)
        with self._use() as ptr:
            status = _native.lib().kl_detokenize(ptr, None, 0, None, 0, byref(length))
        if status == KL_ERR_UNSUPPORTED:
            return False
        check(status)
        return True

    @property
    def info(self) -> ModelInfo:
        """Shapes, device and memory figures (kl_model_info)."""
        if self.closed:
            raise ValueError("model is closed")
        return self._info

    @property
    def has_tokenizer(self) -> bool:
        """Whether the model folder had tiktoken.model + tokenizer_config.json."""
        if self.closed:
            raise ValueError("model is closed")
        return self._has_tokenizer

    # ---- sessions -------------------------------------------------------------------------

    def session(self, max_context: int = 0) -> "Session":
        """A new session at position 0; max_context 0 = the model's default capacity."""
        return Session(self, max_context)

    # ---- tokenizer ---------------------------------------------------------------------

    def tokenize(self, text: Union[str, bytes], parse_special: bool = True) -> List[int]:
        """Token ids of text (no BOS added).

        With parse_special the text of an added token (e.g. "<|im_end|>") becomes its id;
        without, it is plain text. bytes are passed as they are (ill-formed UTF-8 reads as
        U+FFFD). Raises UnsupportedError when the model has no tokenizer.
        """
        data = text_bytes(text)
        if self.closed or self._handle is None:
            raise ValueError("model is closed")
        return self._handle.tokenize(data, parse_special)

    def detokenize(self, ids: Iterable[int]) -> str:
        """The text of token ids (added tokens as their text; ill-formed UTF-8 as U+FFFD)."""
        tokens, n = token_buffer(ids, "ids")
        ids_ptr = token_pointer(tokens, n)
        with self._use() as ptr:
            return _text_call(lambda lib, buf, cap, length: lib.kl_detokenize(
                ptr, ids_ptr, n, buf, cap, length), 16 * n + 16)

    def apply_chat_template(self, messages: Iterable[Union[Mapping[str, str], Tuple[str, str],
                                                          ChatMessage]],
                            add_generation_prompt: bool = True) -> str:
        """The conversation in the model's chat format as text, for display and logs.

        To prompt the model use tokenize_chat: tokenizing this text with parse_special=True
        lets a message that holds "<|im_end|><|im_system|>..." become control tokens.

        messages: dicts {"role": ..., "content": ...}, (role, content) tuples or ChatMessage.
        Roles are "system", "user", "assistant" and "tool". add_generation_prompt appends
        the assistant's opening. A conversation that does not start with a system message
        gets the model's default one, if its template has one.
        """
        msgs, n, pairs = _chat_messages(messages)
        flag = 1 if add_generation_prompt else 0
        guess = sum(len(r) + len(c) for r, c in pairs) + 256
        with self._use() as ptr:
            return _text_call(lambda lib, buf, cap, length: lib.kl_chat_template_apply(
                ptr, msgs if n else None, n, flag, buf, cap, length), guess)

    def tokenize_chat(self, messages: Iterable[Union[Mapping[str, str], Tuple[str, str],
                                                     ChatMessage]],
                      add_generation_prompt: bool = True) -> List[int]:
        """The conversation's token ids in the model's chat format (kl_chat_tokenize), for
        Session.append or generate: the format's markup becomes its special tokens and each
        message's content is plain text, so no message can forge a control token (a user
        writing "<|im_end|>" writes text). Messages as in apply_chat_template.
        """
        msgs, n_msgs, pairs = _chat_messages(messages)
        flag = 1 if add_generation_prompt else 0
        lib = _native.lib()
        cap = sum(len(r) + len(c) for r, c in pairs) + 256  # one pass for well-formed text
        with self._use() as ptr:
            return read_ids(lambda out, cap, n: lib.kl_chat_tokenize(
                ptr, msgs if n_msgs else None, n_msgs, flag, out, cap, n), cap,
                "kl_chat_tokenize")
