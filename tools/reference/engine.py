"""A minimal ctypes view of libkimi_linear.so for the reference tests (the real Python
binding is bindings/python): load a model, append tokens, read logits."""

import ctypes

import numpy as np

KL_LOGITS_LAST, KL_LOGITS_ALL = 1, 2


class ModelInfo(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("vocab_size", ctypes.c_uint32),
                ("hidden_size", ctypes.c_uint32), ("n_layers", ctypes.c_uint32),
                ("n_kda_layers", ctypes.c_uint32), ("n_mla_layers", ctypes.c_uint32),
                ("n_experts", ctypes.c_uint32), ("n_experts_active", ctypes.c_uint32),
                ("max_context", ctypes.c_uint64), ("device", ctypes.c_int),
                ("weight_bytes", ctypes.c_uint64), ("session_fixed_bytes", ctypes.c_uint64),
                ("kv_bytes_per_token", ctypes.c_uint64)]


class Engine:
    def __init__(self, library_path):
        lib = ctypes.CDLL(library_path)
        lib.kl_last_error.restype = ctypes.c_char_p
        lib.kl_model_load.argtypes = [ctypes.c_char_p, ctypes.c_void_p,
                                      ctypes.POINTER(ctypes.c_void_p)]
        lib.kl_model_info.argtypes = [ctypes.c_void_p, ctypes.POINTER(ModelInfo)]
        lib.kl_model_free.argtypes = [ctypes.c_void_p]
        lib.kl_session_create.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                          ctypes.POINTER(ctypes.c_void_p)]
        lib.kl_session_free.argtypes = [ctypes.c_void_p]
        lib.kl_session_append.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32),
                                          ctypes.c_size_t, ctypes.c_int,
                                          ctypes.POINTER(ctypes.c_float)]
        self.lib = lib

    def check(self, status):
        if status != 0:
            raise RuntimeError(f"status {status}: {self.lib.kl_last_error().decode()}")

    def load(self, model_dir):
        handle = ctypes.c_void_p()
        self.check(self.lib.kl_model_load(model_dir.encode(), None, ctypes.byref(handle)))
        info = ModelInfo()
        info.struct_size = ctypes.sizeof(ModelInfo)
        self.check(self.lib.kl_model_info(handle, ctypes.byref(info)))
        return handle, info.vocab_size

    def session(self, model):
        handle = ctypes.c_void_p()
        self.check(self.lib.kl_session_create(model, None, ctypes.byref(handle)))
        return handle

    def append(self, session, tokens, vocab, which=KL_LOGITS_ALL):
        tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        rows = len(tokens) if which == KL_LOGITS_ALL else 1
        logits = np.zeros((rows, vocab), dtype=np.float32)
        self.check(self.lib.kl_session_append(
            session, tokens.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), len(tokens), which,
            logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float))))
        return logits
