/*
 * kimi_linear.i - the one SWIG interface of the Kimi Linear C API (capi/include/kimi_linear.h)
 * for Python, Java and C#.  It is built on kimi_linear.h alone: nothing here reaches into the
 * library's internals.
 *
 *   swig -java   -package ai.kimi.linear.internal -I<capi/include> -outdir <dir> -o <x.c> kimi_linear.i
 *   swig -python -I<capi/include> -o <x.c> kimi_linear.i
 *   swig -csharp -namespace KimiLinear.Internal -I<capi/include> -o <x.c> kimi_linear.i
 * (add -c++ to compile the wrapper as C++; the code below is valid C11 and C++11.)
 *
 * Shape of the wrapped API
 *  - Enums, constants, the opaque handles (kl_model, kl_session), the parameter structs
 *    (kl_model_params, kl_session_params, kl_sampling_params) with their *_default()
 *    functions, and struct kl_model_info are wrapped as they are.
 *  - Functions whose C shape does not suit a binding (out-parameters, caller-sized buffers with
 *    the "cap too small" protocol, a logits buffer without a capacity) are hidden and replaced
 *    by the klb_* helpers in the %inline block below: each returns its result as a value and
 *    reports failure through the exception machinery.  Buffer helpers return the count they
 *    wrote, or -(the size needed) when the caller's buffer is too small (nothing happened then:
 *    the caller retries with a larger buffer); every other failure raises.
 *  - Every kl_status becomes an exception carrying the status and kl_last_error():
 *      Java   ai.kimi.linear.KimiLinearException.fromNative(int, byte[]) builds it (the status
 *             picks the subclass); without that class on the class path: RuntimeException.
 *      Python kimi_linear_native.KimiLinearError (a RuntimeError) with .status/.status_name.
 *      C#     System.ApplicationException, message "KL_ERR_...: <kl_last_error()>".
 *    KL_ERR_BUSY (a second call on a session while one runs) comes the same way: Java's
 *    KimiLinearException.Busy, C#'s KimiLinearException.Busy (by its name), Python's status 10.
 *    kl_session_cancel and kl_session_clear_cancel are wrapped as they are (any thread).
 *    Functions returning kl_status return nothing in the target language.
 *  - Raw callbacks are hidden (kl_set_log_callback, kl_session_generate, the progress
 *    callback of kl_model_params and of kl_checkpoint_quantize_with_progress): generation is
 *    pull-style through the C API's generator (kl_generator_*), wrapped as klb_generator_*
 *    (create with the options as plain values, then one step per klb_generator_next, its
 *    token, end reason, text and log-probabilities read back from the generator); load
 *    progress is set by klb_model_params_set_progress, a checkpoint write's passed to
 *    klb_checkpoint_quantize and the logits processor to klb_generator_create, each their own
 *    per language (Java: a JNI callback to an object's report(float) / process(ByteBuffer,
 *    int[]); C#: a delegate), at the end of this file; no directors are needed.
 *  - Arrays cross without per-element copies:
 *      Java   calls that only copy memory (tokenize, detokenize, chat template, state
 *             save/load) pin the Java array (Get/ReleasePrimitiveArrayCritical); calls that
 *             run the model (append, next) copy in/out with one bulk Get/Set<T>ArrayRegion
 *             instead, because a critical region would hold off the garbage collector for the
 *             whole forward pass.  Java text crosses as UTF-8 byte[] (JNI's own string
 *             functions speak "modified UTF-8", which mangles characters outside the BMP).
 *      Python any buffer-protocol object (array.array, bytearray, numpy) is used in place;
 *             a plain list of ints is converted once.
 *      C#     pinned arrays (fixed): the methods taking them are "unsafe".
 */
%module kimi_linear_native

%{
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "kimi_linear.h"
%}

%include <stdint.i>
%include <typemaps.i>

/* ---- the failure channel ------------------------------------------------------------------
 * A helper that fails calls klb_fail(status) (or klb_fail_with for the binding's own checks);
 * the per-language code after the call turns the pending failure into an exception.  The
 * message is copied at once: kl_last_error() is only valid until the next kl_* call.  Both
 * are thread-local, like kl_last_error() (the message buffer of a thread that exits stays
 * allocated: a few hundred bytes at most per thread that ever saw a failure). */
%{
#if defined(__cplusplus)
#define KLB_TLS thread_local
#else
#define KLB_TLS _Thread_local
#endif

static KLB_TLS int klb_status_ = 0;
static KLB_TLS char* klb_message_ = NULL;
static KLB_TLS size_t klb_message_cap_ = 0;

static void klb_fail_with(int status, const char* message) {
    size_t len = message ? strlen(message) : 0;
    if (len + 1 > klb_message_cap_) {
        char* grown = (char*)realloc(klb_message_, len + 1);
        if (grown) {
            klb_message_ = grown;
            klb_message_cap_ = len + 1;
        } else {
            len = klb_message_cap_ ? klb_message_cap_ - 1 : 0; /* keep what fits */
        }
    }
    if (klb_message_cap_) {
        if (len) memcpy(klb_message_, message, len);
        klb_message_[len] = '\0';
    }
    klb_status_ = status != 0 ? status : (int)KL_ERR_INTERNAL;
}

static void klb_fail(kl_status status) {
    klb_fail_with((int)status, kl_last_error());
}

/* The size protocol's answer as the buffer helpers return it: the size written, or -(the size
 * needed) when the buffer was too small (KL_ERR_INVALID_ARGUMENT) or absent (a NULL buffer
 * asks for the size: KL_OK); any other failure raises (and 0 is returned). */
static int64_t klb_sized(kl_status status, size_t size, size_t cap) {
    if ((status == KL_OK || status == KL_ERR_INVALID_ARGUMENT) && size > cap) return -(int64_t)size;
    if (status == KL_OK) return (int64_t)size;
    klb_fail(status);
    return 0;
}

static const char* klb_message(void) {
    return klb_message_ ? klb_message_ : "";
}

/* Takes the pending failure: its status (0 if none); the message stays in klb_message(). */
static int klb_take_status(void) {
    int status = klb_status_;
    klb_status_ = 0;
    return status;
}

static const char* klb_name_of(int status) {
    kl_status s;
    memcpy(&s, &status, sizeof(s) < sizeof(status) ? sizeof(s) : sizeof(status));
    return kl_status_string(s);
}
%}

/* The functions of kimi_linear.h wrapped as they are that return kl_status: in Java and C#
 * they return nothing.  A kl_status function added to the header and not listed here still
 * throws on failure, but returns the (always KL_OK) status as an enum. */
%define KLB_STATUS_RETURNS
kl_status kl_session_reset, kl_status kl_session_fill_synthetic, kl_status kl_session_state_load,
kl_status kl_checkpoint_quantize
%enddef

/* ---- what is hidden -------------------------------------------------------------------- */
/* Raw callbacks: generation is pull-style (klb_generator_*); a checkpoint write's progress
 * crosses as klb_checkpoint_quantize's argument, the language's own (below, with load
 * progress). */
%ignore kl_set_log_callback;
%ignore kl_checkpoint_quantize_with_progress;
%ignore kl_session_generate;
%ignore kl_session_generate_with_result;
%ignore kl_generate_result;
/* The generator's parameters (logit bias, logits processor) cross as klb_generator_create's
 * arguments; the processor is the language's own (Java: an object's method; C#: a delegate). */
%ignore kl_logits_processor;
%ignore kl_generate_params;
%ignore kl_generate_params_init;
%ignore kl_generate_params_default;
/* The wrapper's call of kl_model_params_default compiles to the header's macro,
 * kl_model_params_init with the full sizeof: the defaults of every field. */
%ignore kl_model_params_init;
/* The generator: its step's text is a pointer valid until the next call, and its parameters
 * hold arrays of pointers; klb_generator_* take plain values and copy the text out. */
%ignore kl_generator_create;
%ignore kl_generator_next;
%ignore kl_generator_free;
%ignore kl_generation_step;
/* By member name alone: kl_model_params is a typedef of an anonymous struct, and SWIG 4.1
 * matches no "kl_model_params::progress_cb" for it (both fields and the types
 * SWIGTYPE_p_f_float_p_void__int / SWIGTYPE_p_void were still generated).  No other struct of
 * kimi_linear.h has fields of these names. */
%ignore progress_cb;
%ignore progress_user;
/* The device list, a fixed array (SWIG would give a pointer type no language can fill): set
 * by klb_model_params_set_devices from the language's own array.  n_devices stays wrapped. */
%ignore devices;
/* Replaced by the klb_* helpers (out-parameters and caller-sized buffers). */
%ignore kl_status_string;
%ignore kl_model_load;
%ignore kl_model_create_random;
/* struct kl_model_info and the function kl_model_info share a name, which C allows (tags have
 * their own namespace) but C++ does not: in C++ the plain name kl_model_info is the function.
 * Both are hidden; the struct comes back as klb_model_info_t below (target name kl_model_info). */
%ignore kl_model_info;
%ignore kl_session_create;
%ignore kl_session_append; /* its logits buffer has no capacity: klb_session_append checks it */
%ignore kl_session_position;
%ignore kl_session_tokens;
%ignore kl_session_fork;
%ignore kl_session_state_size;
%ignore kl_session_state_save;
%ignore kl_session_sample;
%ignore kl_session_next;
%ignore kl_tokenize;
%ignore kl_detokenize;
%ignore kl_chat_template_apply;
%ignore kl_chat_tokenize;
%ignore kl_chat_message; /* messages cross as one packed buffer: klb_chat_template_apply */
/* Arrays of session pointers and per-session results: a klb_batch gathers and reads them
 * one value at a time. */
%ignore kl_batch_next;
%ignore kl_batch_append;

/* ======================================================================================== */
#if defined(SWIGJAVA)
/* ======================================================================================== */

/* C enums as proper Java enums whose values are compile-time constants (no JNI call). */
%include <enums.swg>
%javaconst(1);

/* Unsigned 64-bit values (positions, byte counts, seeds) as Java long: the bits are kept,
 * read them with Long.toUnsignedString where the top bit matters (seeds). */
%apply long long { uint64_t };
%apply const long long & { const uint64_t & };

/* The proxies are freed explicitly by the ai.kimi.linear classes (try/finally, Cleaner):
 * no finalize() (deprecated since Java 9). */
%typemap(javafinalize) SWIGTYPE ""

/* Loading the JNI library is the public package's job (java.library.path, else the copies
 * inside the jar). */
%pragma(java) jniclasscode=%{
  static {
    ai.kimi.linear.NativeLoader.load();
  }
%}

%{
/* JNI calls that read the same in C and C++ (SWIG's JCALLn are expanded only in typemaps). */
#if defined(__cplusplus)
#define KLB_JNI(f, ...) jenv->f(__VA_ARGS__)
#define KLB_JNI0(f) jenv->f()
#else
#define KLB_JNI(f, ...) (*jenv)->f(jenv, __VA_ARGS__)
#define KLB_JNI0(f) (*jenv)->f(jenv)
#endif

#ifndef KLB_JAVA_EXCEPTION_CLASS
#define KLB_JAVA_EXCEPTION_CLASS "ai/kimi/linear/KimiLinearException"
#endif

/* Throws the exception for (status, message): KimiLinearException.fromNative(int, byte[])
 * picks the subclass and decodes the UTF-8 message; without that class a RuntimeException.
 * Never called inside a critical region. */
static void klb_java_throw(JNIEnv* jenv, int status, const char* message) {
    jclass cls;
    if (KLB_JNI0(ExceptionCheck)) return; /* an exception is already pending */
    cls = KLB_JNI(FindClass, KLB_JAVA_EXCEPTION_CLASS);
    if (cls) {
        jmethodID factory = KLB_JNI(GetStaticMethodID, cls, "fromNative",
                                   "(I[B)L" KLB_JAVA_EXCEPTION_CLASS ";");
        if (factory) {
            jsize len = (jsize)strlen(message);
            jbyteArray bytes = KLB_JNI(NewByteArray, len);
            if (bytes) {
                jobject exception;
                KLB_JNI(SetByteArrayRegion, bytes, 0, len, (const jbyte*)message);
                exception = KLB_JNI(CallStaticObjectMethod, cls, factory, (jint)status, bytes);
                KLB_JNI(DeleteLocalRef, bytes);
                if (exception && !KLB_JNI0(ExceptionCheck)) {
                    KLB_JNI(Throw, (jthrowable)exception);
                    return;
                }
            }
        }
    }
    KLB_JNI0(ExceptionClear);
    cls = KLB_JNI(FindClass, "java/lang/RuntimeException");
    if (cls) KLB_JNI(ThrowNew, cls, message);
}

static void klb_java_raise_pending(JNIEnv* jenv) {
    int status = klb_take_status();
    if (status != 0) klb_java_throw(jenv, status, klb_message());
}
%}

/* Ordering: the helpers never throw from inside the call.  Arrays are pinned in "check"
 * typemaps (after every argument is converted) and released in "argout"; the pending failure
 * is thrown by the "ret" typemap, which runs after every argout/freearg, so no JNI call ever
 * happens inside a critical region and a failed call releases and frees everything.  (Only
 * an argument conversion that fails - out of memory, a NUL in a path, a null OUTPUT array -
 * throws at once, before anything is pinned.) */
%exception %{
  klb_status_ = 0;
  $action
%}
%typemap(ret) void, kl_status, bool, char, signed char, unsigned char, short, unsigned short,
              int, unsigned int, long, unsigned long, long long, unsigned long long, float,
              double, enum SWIGTYPE, SWIGTYPE, SWIGTYPE *, SWIGTYPE &, char *, const char * %{
  klb_java_raise_pending(jenv);
%}

/* kl_status: the wrapped functions that return it return nothing, a failure throws.  (Named
 * typemaps, KLB_STATUS_RETURNS: a typemap on the type itself would also retype the generated
 * kl_status enum class.)  Any other kl_status return still throws on failure. */
%typemap(jni) KLB_STATUS_RETURNS "void"
%typemap(jtype) KLB_STATUS_RETURNS "void"
%typemap(jstype) KLB_STATUS_RETURNS "void"
%typemap(javaout) KLB_STATUS_RETURNS { $jnicall; }
%typemap(out) KLB_STATUS_RETURNS %{ if ($1 != KL_OK) klb_fail($1); %}
%typemap(out) kl_status %{
  $result = (jint)$1;
  if ($1 != KL_OK) klb_fail($1);
%}

/* A NUL-terminated UTF-8 argument from a Java String (paths, JSON): copied once. */
%typemap(jni) const char* KLB_UTF8Z "jbyteArray"
%typemap(jtype) const char* KLB_UTF8Z "byte[]"
%typemap(jstype) const char* KLB_UTF8Z "String"
%typemap(javain) const char* KLB_UTF8Z
  "($javainput == null ? null : $javainput.getBytes(java.nio.charset.StandardCharsets.UTF_8))"
%typemap(in) const char* KLB_UTF8Z (char* copy = NULL) %{
  $1 = NULL;
  if ($input) {
    jsize len = KLB_JNI(GetArrayLength, $input);
    copy = (char*)malloc((size_t)len + 1);
    if (!copy) {
      klb_java_throw(jenv, KL_ERR_OUT_OF_MEMORY, "out of memory copying a string argument");
      return $null;
    }
    KLB_JNI(GetByteArrayRegion, $input, 0, len, (jbyte*)copy);
    copy[len] = '\0';
    if (memchr(copy, '\0', (size_t)len) != NULL) {
      free(copy);
      klb_java_throw(jenv, KL_ERR_INVALID_ARGUMENT, "$1_name contains a NUL character");
      return $null;
    }
    $1 = copy;
  }
%}
%typemap(freearg) const char* KLB_UTF8Z %{ free(copy$argnum); %}
%apply const char* KLB_UTF8Z { const char* dir, const char* config_json, const char* in_dir,
                               const char* out_dir };

/* A pinned primitive array: (pointer, length) from a Java array, held with
 * GetPrimitiveArrayCritical only around the call.  MODE: JNI_ABORT for inputs, 0 to write
 * back outputs. */
%define KLB_JAVA_PINNED(CTYPE, JNITYPE, JTYPE, MODE, PATTERN)
%typemap(jni) PATTERN "JNITYPE"
%typemap(jtype) PATTERN "JTYPE"
%typemap(jstype) PATTERN "JTYPE"
%typemap(javain) PATTERN "$javainput"
%typemap(in) PATTERN (JNITYPE arr = NULL) %{
  arr = $input;
  $1 = NULL;
  $2 = arr ? (size_t)KLB_JNI(GetArrayLength, arr) : 0;
%}
%typemap(check) PATTERN %{
  if (arr$argnum && $2 > 0) {
    $1 = ($1_ltype)KLB_JNI(GetPrimitiveArrayCritical, arr$argnum, NULL);
    if (!$1) $2 = 0; /* the JVM could not pin it: an OutOfMemoryError is pending */
  }
%}
%typemap(argout) PATTERN %{
  if ($1) KLB_JNI(ReleasePrimitiveArrayCritical, arr$argnum, (void*)$1, MODE);
%}
%enddef

KLB_JAVA_PINNED(const int32_t, jintArray, int[], JNI_ABORT, (const int32_t* ids, size_t n_ids))
KLB_JAVA_PINNED(float, jfloatArray, float[], 0, (float* out_logprobs, size_t logprobs_cap))
KLB_JAVA_PINNED(int32_t, jintArray, int[], 0, (int32_t* out, size_t cap))
KLB_JAVA_PINNED(char, jbyteArray, byte[], 0, (char* out_text, size_t out_cap))
KLB_JAVA_PINNED(const char, jbyteArray, byte[], JNI_ABORT, (const char* packed, size_t packed_len))
KLB_JAVA_PINNED(void, jbyteArray, byte[], 0, (void* buf, size_t cap))
KLB_JAVA_PINNED(const void, jbyteArray, byte[], JNI_ABORT, (const void* buf, size_t n))

/* Text (const char* text, size_t len) from a Java String: encoded to UTF-8 in Java, pinned. */
KLB_JAVA_PINNED(const char, jbyteArray, byte[], JNI_ABORT, (const char* text, size_t len))
%typemap(jstype) (const char* text, size_t len) "String"
%typemap(javain) (const char* text, size_t len)
  "($javainput == null ? null : $javainput.getBytes(java.nio.charset.StandardCharsets.UTF_8))"

/* Arrays of calls that run the model: one bulk copy in (tokens) or out (logits, piece), so
 * that no critical region spans a forward pass.  Outputs are written back only on success,
 * and only the part the helper reports written (its return value). */
%typemap(jni) (const int32_t* tokens, size_t n) "jintArray"
%typemap(jtype) (const int32_t* tokens, size_t n) "int[]"
%typemap(jstype) (const int32_t* tokens, size_t n) "int[]"
%typemap(javain) (const int32_t* tokens, size_t n) "$javainput"
%typemap(in) (const int32_t* tokens, size_t n) (int32_t* copy = NULL) %{
  $1 = NULL;
  $2 = 0;
  if ($input) {
    jsize len = KLB_JNI(GetArrayLength, $input);
    if (len > 0) {
      copy = (int32_t*)malloc((size_t)len * sizeof(int32_t));
      if (!copy) {
        klb_java_throw(jenv, KL_ERR_OUT_OF_MEMORY, "out of memory copying the tokens");
        return $null;
      }
      KLB_JNI(GetIntArrayRegion, $input, 0, len, (jint*)copy);
      $1 = copy;
      $2 = (size_t)len;
    }
  }
%}
%typemap(freearg) (const int32_t* tokens, size_t n) %{ free(copy$argnum); %}

%define KLB_JAVA_COPY_OUT(CTYPE, JNITYPE, JTYPE, SETREGION, JELEM, PATTERN)
%typemap(jni) PATTERN "JNITYPE"
%typemap(jtype) PATTERN "JTYPE"
%typemap(jstype) PATTERN "JTYPE"
%typemap(javain) PATTERN "$javainput"
%typemap(in) PATTERN (CTYPE* copy = NULL, JNITYPE arr = NULL) %{
  arr = $input;
  $1 = NULL;
  $2 = 0;
  if ($input) {
    jsize len = KLB_JNI(GetArrayLength, $input);
    if (len > 0) {
      copy = (CTYPE*)malloc((size_t)len * sizeof(CTYPE));
      if (!copy) {
        klb_java_throw(jenv, KL_ERR_OUT_OF_MEMORY, "out of memory for an output buffer");
        return $null;
      }
      $1 = copy;
      $2 = (size_t)len;
    }
  }
%}
%typemap(argout) PATTERN %{
  if (copy$argnum && klb_status_ == 0 && result > 0 && (size_t)result <= $2)
    KLB_JNI(SETREGION, arr$argnum, 0, (jsize)result, (const JELEM*)copy$argnum);
%}
%typemap(freearg) PATTERN %{ free(copy$argnum); %}
%enddef

KLB_JAVA_COPY_OUT(float, jfloatArray, float[], SetFloatArrayRegion, jfloat, (float* logits, size_t logits_cap))

/* klb_generator_create's arrays: copied in (one bulk Get<T>ArrayRegion), not pinned, because
 * the helper makes JNI calls (the logits processor's global reference), which a critical
 * region forbids.  A null array is an empty one. */
%define KLB_JAVA_COPY_IN(CTYPE, JNITYPE, JTYPE, GETREGION, JELEM, PATTERN)
%typemap(jni) PATTERN "JNITYPE"
%typemap(jtype) PATTERN "JTYPE"
%typemap(jstype) PATTERN "JTYPE"
%typemap(javain) PATTERN "$javainput"
%typemap(in) PATTERN (CTYPE* copy = NULL) %{
  $1 = NULL;
  $2 = 0;
  if ($input) {
    jsize len = KLB_JNI(GetArrayLength, $input);
    if (len > 0) {
      copy = (CTYPE*)malloc((size_t)len * sizeof(CTYPE));
      if (!copy) {
        klb_java_throw(jenv, KL_ERR_OUT_OF_MEMORY, "out of memory copying $1_name");
        return $null;
      }
      KLB_JNI(GETREGION, $input, 0, len, (JELEM*)copy);
      $1 = copy;
      $2 = (size_t)len;
    }
  }
%}
%typemap(freearg) PATTERN %{ free(copy$argnum); %}
%enddef

KLB_JAVA_COPY_IN(int32_t, jintArray, int[], GetIntArrayRegion, jint, (const int32_t* stop_tokens, size_t n_stop_tokens))
KLB_JAVA_COPY_IN(int32_t, jintArray, int[], GetIntArrayRegion, jint, (const int32_t* devices, size_t n_devices))
KLB_JAVA_COPY_IN(int32_t, jintArray, int[], GetIntArrayRegion, jint, (const int32_t* bias_tokens, size_t n_bias_tokens))
KLB_JAVA_COPY_IN(float, jfloatArray, float[], GetFloatArrayRegion, jfloat, (const float* bias_values, size_t n_bias_values))
KLB_JAVA_COPY_IN(char, jbyteArray, byte[], GetByteArrayRegion, jbyte, (const char* stop_strings, size_t stop_strings_len))
KLB_JAVA_COPY_OUT(char, jbyteArray, byte[], SetByteArrayRegion, jbyte, (char* piece, size_t piece_cap))

/* The sampled token of klb_session_next: an int[] of length >= 1 (typemaps.i OUTPUT). */
%apply int *OUTPUT { int32_t* token };

/* ======================================================================================== */
#elif defined(SWIGCSHARP)
/* ======================================================================================== */

%include <arrays_csharp.i>

/* size_t as ulong: SWIG's default (uint, passed where the glue reads an unsigned long) is
 * 32 bits on the C# side and 64 on the C side on LP64 platforms. */
%apply unsigned long long { size_t };
%apply const unsigned long long & { const size_t & };

%{
static void klb_cs_raise_pending(void) {
    int status = klb_take_status();
    if (status != 0) {
        const char* name = klb_name_of(status);
        const char* message = klb_message();
        size_t size = strlen(name) + 2 + strlen(message) + 1;
        char* text = (char*)malloc(size);
        if (text) {
            strcpy(text, name);
            strcat(text, ": ");
            strcat(text, message);
        }
        SWIG_CSharpSetPendingException(SWIG_CSharpApplicationException, text ? text : name);
        free(text);
    }
}
%}

/* The pending exception is only recorded here (C# throws it after the call returns), so the
 * wrapper runs to its end: no early return. */
%feature("except", canthrow=1) %{
  klb_status_ = 0;
  $action
  if (klb_status_ != 0) klb_cs_raise_pending();
%}

/* kl_status: the wrapped functions that return it return nothing, a failure throws (named
 * typemaps: see the Java section).  Any other kl_status return still throws on failure. */
%typemap(ctype) KLB_STATUS_RETURNS "void"
%typemap(imtype) KLB_STATUS_RETURNS "void"
%typemap(cstype) KLB_STATUS_RETURNS "void"
%typemap(out, canthrow=1) KLB_STATUS_RETURNS %{
  if ($1 != KL_OK) {
    klb_fail($1);
    klb_cs_raise_pending();
  }
%}
%typemap(csout, excode=SWIGEXCODE) KLB_STATUS_RETURNS {
    $imcall;$excode
  }
%typemap(out, canthrow=1) kl_status %{
  $result = (int)$1;
  if ($1 != KL_OK) {
    klb_fail($1);
    klb_cs_raise_pending();
  }
%}

/* Pinned arrays (fixed): the length travels as the separate size_t argument. */
%define KLB_CS_FIXED(CTYPE, CSTYPE, PARAM)
%typemap(ctype) PARAM "CTYPE*"
%typemap(imtype) PARAM "global::System.IntPtr"
%typemap(cstype) PARAM "CSTYPE[]"
%typemap(csin, pre="    fixed ( CSTYPE* swig_ptrTo_$csinput = $csinput ) {", terminator="    }")
  PARAM "(global::System.IntPtr)swig_ptrTo_$csinput"
%typemap(in) PARAM "$1 = ($1_ltype)$input;"
%typemap(freearg) PARAM ""
%typemap(argout) PARAM ""
%enddef

KLB_CS_FIXED(int, int, const int32_t* tokens)
KLB_CS_FIXED(int, int, const int32_t* ids)
KLB_CS_FIXED(int, int, const int32_t* stop_tokens)
KLB_CS_FIXED(int, int, const int32_t* devices)
KLB_CS_FIXED(int, int, const int32_t* bias_tokens)
KLB_CS_FIXED(float, float, const float* bias_values)
KLB_CS_FIXED(float, float, float* out_logprobs)
KLB_CS_FIXED(unsigned char, byte, const char* stop_strings)
KLB_CS_FIXED(int, int, int32_t* out)
KLB_CS_FIXED(float, float, float* logits)
KLB_CS_FIXED(unsigned char, byte, const char* text)
KLB_CS_FIXED(unsigned char, byte, const char* packed)
KLB_CS_FIXED(unsigned char, byte, char* out_text)
KLB_CS_FIXED(unsigned char, byte, char* piece)
KLB_CS_FIXED(unsigned char, byte, void* buf)
KLB_CS_FIXED(unsigned char, byte, const void* buf)
%csmethodmodifiers klb_session_append "public unsafe";
%csmethodmodifiers klb_session_next "public unsafe";
%csmethodmodifiers klb_session_state_save "public unsafe";
%csmethodmodifiers kl_session_state_load "public unsafe";
%csmethodmodifiers klb_tokenize "public unsafe";
%csmethodmodifiers klb_detokenize "public unsafe";
%csmethodmodifiers klb_chat_template_apply "public unsafe";
%csmethodmodifiers klb_chat_tokenize "public unsafe";
%csmethodmodifiers klb_generator_create "public unsafe";
%csmethodmodifiers klb_generator_piece "public unsafe";
%csmethodmodifiers klb_generator_top "public unsafe";
%csmethodmodifiers klb_session_tokens "public unsafe";
%csmethodmodifiers klb_batch_append "public unsafe";
%csmethodmodifiers klb_batch_piece "public unsafe";
%csmethodmodifiers klb_model_params_set_devices "public unsafe";

%apply int *OUTPUT { int32_t* token };

/* ======================================================================================== */
#elif defined(SWIGPYTHON)
/* ======================================================================================== */

%{
static PyObject* klb_py_error = NULL;

static void klb_py_raise_pending(void) {
    int status = klb_take_status();
    PyObject *text, *exc;
    if (status == 0) return;
    text = PyUnicode_DecodeUTF8(klb_message(), (Py_ssize_t)strlen(klb_message()), "replace");
    exc = text ? PyObject_CallFunctionObjArgs(klb_py_error ? klb_py_error : PyExc_RuntimeError,
                                              text, NULL)
               : NULL;
    Py_XDECREF(text);
    if (!exc) return; /* that failure's exception is set */
    {
        PyObject* code = PyLong_FromLong(status);
        PyObject* name = PyUnicode_FromString(klb_name_of(status));
        if (code) PyObject_SetAttrString(exc, "status", code);
        if (name) PyObject_SetAttrString(exc, "status_name", name);
        Py_XDECREF(code);
        Py_XDECREF(name);
    }
    PyErr_SetObject((PyObject*)Py_TYPE(exc), exc);
    Py_DECREF(exc);
}

/* Borrows a contiguous buffer of items of `itemsize` bytes (format checked when given). */
static int klb_py_buffer(PyObject* obj, Py_buffer* view, int writable, Py_ssize_t itemsize,
                         const char* formats, const char* what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) return -1;
    if (view->itemsize != itemsize ||
        (formats && view->format && !strchr(formats, view->format[strlen(view->format) - 1]))) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s: expected a buffer of %d-byte items (%s)", what,
                     (int)itemsize, formats ? formats : "bytes");
        return -1;
    }
    return 0;
}
%}

%init %{
  klb_py_error = PyErr_NewException("kimi_linear_native.KimiLinearError", PyExc_RuntimeError, NULL);
  if (klb_py_error) {
    Py_INCREF(klb_py_error);
    PyModule_AddObject(m, "KimiLinearError", klb_py_error);
  }
%}

/* The exception class lives in the C extension; the Python module re-exports it. */
%pythoncode %{
KimiLinearError = _kimi_linear_native.KimiLinearError
%}

%exception %{
  klb_status_ = 0;
  $action
  if (klb_status_ != 0) {
    klb_py_raise_pending();
    SWIG_fail;
  }
%}

/* kl_status: returns None, a failure raises. */
%typemap(out) kl_status %{
  if ($1 != KL_OK) {
    klb_fail($1);
    klb_py_raise_pending();
    SWIG_fail;
  }
  $result = SWIG_Py_Void();
%}

/* Token ids in: an int32 buffer in place (array.array('i'), numpy int32), else any sequence
 * of ints, converted once. */
%typemap(in) (const int32_t* tokens, size_t n) (Py_buffer view, int have_view = 0, int32_t* copy = NULL) {
  if (PyObject_CheckBuffer($input)) {
    if (klb_py_buffer($input, &view, 0, 4, "il", "$1_name") != 0) SWIG_fail;
    have_view = 1;
    $1 = (int32_t*)view.buf;
    $2 = (size_t)(view.len / 4);
  } else {
    Py_ssize_t i, count;
    PyObject* seq = PySequence_Fast($input, "$1_name: expected a sequence of ints or an int32 buffer");
    if (!seq) SWIG_fail;
    count = PySequence_Fast_GET_SIZE(seq);
    copy = (int32_t*)malloc((size_t)(count ? count : 1) * sizeof(int32_t));
    if (!copy) { Py_DECREF(seq); PyErr_NoMemory(); SWIG_fail; }
    for (i = 0; i < count; ++i) {
      long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
      if (v == -1 && PyErr_Occurred()) { Py_DECREF(seq); SWIG_fail; }
      if (v < INT32_MIN || v > INT32_MAX) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_OverflowError, "$1_name: a token id does not fit in int32");
        SWIG_fail;
      }
      copy[i] = (int32_t)v;
    }
    Py_DECREF(seq);
    $1 = copy;
    $2 = (size_t)count;
  }
}
%typemap(freearg) (const int32_t* tokens, size_t n) {
  if (have_view$argnum) PyBuffer_Release(&view$argnum);
  free(copy$argnum);
}
%apply (const int32_t* tokens, size_t n) { (const int32_t* ids, size_t n_ids),
                                           (const int32_t* stop_tokens, size_t n_stop_tokens),
                                           (const int32_t* bias_tokens, size_t n_bias_tokens),
                                           (const int32_t* devices, size_t n_devices) };

/* Writable buffers used in place; None: no buffer (NULL, capacity 0). */
%define KLB_PY_OUT_BUFFER(CTYPE, ITEMSIZE, FORMATS, PATTERN)
%typemap(in) PATTERN (Py_buffer view, int have_view = 0) {
  if ($input == Py_None) {
    $1 = NULL;
    $2 = 0;
  } else {
    if (klb_py_buffer($input, &view, 1, ITEMSIZE, FORMATS, "$1_name") != 0) SWIG_fail;
    have_view = 1;
    $1 = (CTYPE*)view.buf;
    $2 = (size_t)(view.len / ITEMSIZE);
  }
}
%typemap(freearg) PATTERN { if (have_view$argnum) PyBuffer_Release(&view$argnum); }
%enddef
/* A float32 buffer read in place (array.array('f'), numpy float32); None: none. */
%typemap(in) (const float* bias_values, size_t n_bias_values) (Py_buffer view, int have_view = 0) {
  if ($input == Py_None) {
    $1 = NULL;
    $2 = 0;
  } else {
    if (klb_py_buffer($input, &view, 0, 4, "f", "$1_name") != 0) SWIG_fail;
    have_view = 1;
    $1 = (float*)view.buf;
    $2 = (size_t)(view.len / 4);
  }
}
%typemap(freearg) (const float* bias_values, size_t n_bias_values) { if (have_view$argnum) PyBuffer_Release(&view$argnum); }
KLB_PY_OUT_BUFFER(int32_t, 4, "il", (int32_t* out, size_t cap))
KLB_PY_OUT_BUFFER(float, 4, "f", (float* logits, size_t logits_cap))
KLB_PY_OUT_BUFFER(float, 4, "f", (float* out_logprobs, size_t logprobs_cap))
KLB_PY_OUT_BUFFER(char, 1, NULL, (char* out_text, size_t out_cap))
KLB_PY_OUT_BUFFER(char, 1, NULL, (char* piece, size_t piece_cap))
KLB_PY_OUT_BUFFER(void, 1, NULL, (void* buf, size_t cap))

/* Read-only bytes used in place: str (its cached UTF-8) or any bytes-like object. */
%typemap(in) (const char* text, size_t len) (Py_buffer view, int have_view = 0) {
  if (PyUnicode_Check($input)) {
    Py_ssize_t size = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize($input, &size);
    if (!utf8) SWIG_fail;
    $1 = ($1_ltype)utf8;
    $2 = (size_t)size;
  } else {
    if (PyObject_GetBuffer($input, &view, PyBUF_SIMPLE) != 0) SWIG_fail;
    have_view = 1;
    $1 = ($1_ltype)view.buf;
    $2 = (size_t)view.len;
  }
}
%typemap(freearg) (const char* text, size_t len) { if (have_view$argnum) PyBuffer_Release(&view$argnum); }
%apply (const char* text, size_t len) { (const char* packed, size_t packed_len),
                                        (const char* stop_strings, size_t stop_strings_len),
                                        (const void* buf, size_t n) };

%apply int *OUTPUT { int32_t* token };

#endif /* language sections */

/* ---- the API as it is ------------------------------------------------------------------- */
/* SWIG's parser does not know GCC attributes (KL_API): for SWIG only, they are nothing. */
#define __attribute__(x)
%include "kimi_linear.h"

/* struct kl_model_info under a name that C++ wrapper code can spell.  SWIG sees the fields
 * declared here; the compiler sees the typedef of the header's struct, so a field renamed or
 * removed in kimi_linear.h fails the build (a new field is simply not wrapped until added). */
%{
typedef struct kl_model_info klb_model_info_t;
%}
%rename(kl_model_info) klb_model_info_t;
typedef struct {
    uint32_t struct_size;
    uint32_t vocab_size;
    uint32_t hidden_size;
    uint32_t n_layers;
    uint32_t n_kda_layers;
    uint32_t n_mla_layers;
    uint32_t n_experts;
    uint32_t n_experts_active;
    uint64_t max_context;
    kl_device device;
    uint64_t weight_bytes;
    uint64_t session_fixed_bytes;
    uint64_t kv_bytes_per_token;
    int32_t bos_token;
    int32_t eos_token;
    uint64_t n_params;
    uint64_t n_active_params;
    int32_t eot_token;
    uint64_t n_routed_params;
    uint64_t decode_weight_bytes;
    uint64_t routed_weight_bytes;
    uint32_t n_devices;
} klb_model_info_t;

/* What the helpers share; not wrapped. */
%{
/* The NUL-terminated UTF-8 strings of a packed buffer ("user\0Hi\0"): every language passes
 * a list of strings this way, without an array-of-structs typemap.  *strings: a malloc'ed
 * array of *n pointers into packed (NULL when there are none; the caller frees it).  Returns
 * 1, or 0 after klb_fail_with. */
static int klb_unpack(const char* packed, size_t packed_len, const char*** strings, size_t* n) {
    size_t i, count = 0;
    const char* at = packed;
    *strings = NULL;
    *n = 0;
    if (packed_len > 0 && (packed == NULL || packed[packed_len - 1] != '\0')) {
        klb_fail_with(KL_ERR_INVALID_ARGUMENT, "the packed strings must end with a NUL");
        return 0;
    }
    for (i = 0; i < packed_len; ++i) count += packed[i] == '\0';
    if (count == 0) return 1;
    *strings = (const char**)malloc(count * sizeof(const char*));
    if (!*strings) {
        klb_fail_with(KL_ERR_OUT_OF_MEMORY, "out of memory");
        return 0;
    }
    for (i = 0; i < count; ++i) {
        (*strings)[i] = at;
        at += strlen(at) + 1;
    }
    *n = count;
    return 1;
}

typedef struct klb_generator klb_generator;
struct klb_generator {
    kl_generator* generator;
    kl_generation_step step; /* the last step that succeeded (or the one a cancel stopped) */
    /* The language's logits-processor state (NULL: none), freed with the generator. */
    void* processor_user;
    void (*processor_free)(void* user);
};

/* kl_generator_create with the options as values, shared by each language's
 * klb_generator_create (which adds its own logits processor): sampling may be NULL
 * (defaults); the stop strings are packed (klb_unpack: "</s>\0User:\0"), each non-empty
 * UTF-8; bias_tokens[i] gets bias_values[i] (the counts must match); n_top_logprobs implies
 * logprobs.  Every option is checked and copied now (kl_generator_create): InvalidArgument
 * for an empty or ill-formed stop string, a token outside the vocabulary, a bias that is NaN
 * or +inf, n_top_logprobs above KL_MAX_TOP_LOGPROBS; Unsupported for stop strings on a model
 * without a tokenizer.  processor_user is freed with processor_free on failure too (NULL:
 * nothing).  Free the result with klb_generator_free. */
static klb_generator* klb_generator_open(kl_session* session, uint32_t max_new_tokens,
                                         const kl_sampling_params* sampling,
                                         const int32_t* stop_tokens, size_t n_stop_tokens,
                                         const char* stop_strings, size_t stop_strings_len,
                                         int logprobs, uint32_t n_top_logprobs,
                                         const int32_t* bias_tokens, size_t n_bias_tokens,
                                         const float* bias_values, size_t n_bias_values,
                                         kl_logits_processor processor, void* processor_user,
                                         void (*processor_free)(void*)) {
    kl_generate_params params;
    const char** stops = NULL;
    size_t n_stops = 0;
    klb_generator* generator = NULL;
    kl_status status;
    if (n_bias_tokens != n_bias_values) {
        klb_fail_with(KL_ERR_INVALID_ARGUMENT, "the logit bias needs one value per token");
        goto fail;
    }
    if (!klb_unpack(stop_strings, stop_strings_len, &stops, &n_stops)) goto fail;
    generator = (klb_generator*)calloc(1, sizeof(klb_generator));
    if (!generator) {
        klb_fail_with(KL_ERR_OUT_OF_MEMORY, "out of memory");
        goto fail;
    }
    (void)kl_generate_params_init(&params, sizeof params);
    params.max_new_tokens = max_new_tokens;
    if (sampling) params.sampling = *sampling;
    params.stop_tokens = stop_tokens;
    params.n_stop_tokens = n_stop_tokens;
    params.stop_strings = (const char* const*)stops;
    params.n_stop_strings = n_stops;
    params.logprobs = logprobs ? 1 : 0;
    params.n_top_logprobs = n_top_logprobs;
    params.logit_bias_tokens = bias_tokens;
    params.logit_bias_values = bias_values;
    params.n_logit_bias = n_bias_tokens;
    params.logits_processor = processor;
    params.logits_processor_user = processor_user;
    status = kl_generator_create(session, &params, &generator->generator);
    free((void*)stops);
    stops = NULL;
    if (status != KL_OK) {
        klb_fail(status);
        goto fail;
    }
    generator->processor_user = processor_user;
    generator->processor_free = processor_free;
    generator->step.struct_size = (uint32_t)sizeof(kl_generation_step);
    generator->step.token = KL_NO_TOKEN;
    generator->step.piece = "";
    generator->step.end = KL_END_NONE;
    return generator;
fail:
    free((void*)stops);
    free(generator);
    if (processor_free && processor_user) processor_free(processor_user);
    return NULL;
}
%}

/* ---- helpers: the C API in binding-friendly shapes --------------------------------------
 * Built only on kimi_linear.h.  Each reports failure with klb_fail(); the language code above
 * raises it after the call. */
%inline %{

/* kl_status_string for any int status (e.g. the status of an exception). */
const char* klb_status_string(int status) {
    return klb_name_of(status);
}

/* kl_model_load: the model, or raises.  dir: UTF-8 path; params may be NULL (defaults). */
kl_model* klb_model_load(const char* dir, const kl_model_params* params) {
    kl_model* model = NULL;
    kl_status status = kl_model_load(dir, params, &model);
    if (status != KL_OK) {
        klb_fail(status);
        return NULL;
    }
    return model;
}

/* kl_model_create_random: a model with deterministic random weights for a config.json text. */
kl_model* klb_model_create_random(const char* config_json, uint64_t seed,
                                  const kl_model_params* params) {
    kl_model* model = NULL;
    kl_status status = kl_model_create_random(config_json, seed, params, &model);
    if (status != KL_OK) {
        klb_fail(status);
        return NULL;
    }
    return model;
}

/* kl_model_params' device list (n_devices, devices) from the language's array: n_devices
 * entries, the first KL_MAX_DEVICES of them copied and the rest of the array zeroed (a longer
 * list keeps its count, which the load refuses: KL_ERR_INVALID_ARGUMENT).  Empty: one device
 * (device_index). */
void klb_model_params_set_devices(kl_model_params* params, const int32_t* devices,
                                  size_t n_devices) {
    size_t i;
    if (!params) {
        klb_fail_with(KL_ERR_INVALID_ARGUMENT, "params must not be null");
        return;
    }
    params->n_devices = n_devices > UINT32_MAX ? UINT32_MAX : (uint32_t)n_devices;
    for (i = 0; i < KL_MAX_DEVICES; ++i) params->devices[i] = i < n_devices ? devices[i] : 0;
}

/* kl_model_info: the whole struct (struct_size set here), or raises. */
klb_model_info_t klb_model_info(const kl_model* model) {
    klb_model_info_t info;
    kl_status status;
    memset(&info, 0, sizeof(info));
    info.struct_size = (uint32_t)sizeof(info);
    status = kl_model_info(model, &info);
    if (status != KL_OK) klb_fail(status);
    return info;
}

/* 1 if the model folder had a tokenizer (the text functions work), else 0. */
int klb_model_has_tokenizer(const kl_model* model) {
    size_t n = 0;
    kl_status status = kl_tokenize(model, "", 0, 0, NULL, 0, &n);
    if (status == KL_OK) return 1;
    if (status == KL_ERR_UNSUPPORTED) return 0;
    klb_fail(status);
    return 0;
}

/* kl_session_create: a session at position 0, or raises.  params may be NULL. */
kl_session* klb_session_create(kl_model* model, const kl_session_params* params) {
    kl_session* session = NULL;
    kl_status status = kl_session_create(model, params, &session);
    if (status != KL_OK) {
        klb_fail(status);
        return NULL;
    }
    return session;
}

/* kl_session_fork: an independent deep copy, or raises. */
kl_session* klb_session_fork(const kl_session* session) {
    kl_session* copy = NULL;
    kl_status status = kl_session_fork(session, &copy);
    if (status != KL_OK) {
        klb_fail(status);
        return NULL;
    }
    return copy;
}

/* kl_session_position: tokens consumed so far. */
uint64_t klb_session_position(const kl_session* session) {
    uint64_t position = 0;
    kl_status status = kl_session_position(session, &position);
    if (status != KL_OK) klb_fail(status);
    return position;
}

/* kl_session_append with a checked logits buffer.  The C call takes no capacity for logits
 * and a session cannot tell its vocabulary size, so the caller passes the model's vocab_size
 * (klb_model_info) and the buffer's capacity in floats: LAST needs vocab_size, ALL
 * n * vocab_size, NONE nothing (logits may be NULL).  Returns the number of floats written. */
int64_t klb_session_append(kl_session* session, const int32_t* tokens, size_t n, kl_logits which,
                           float* logits, size_t logits_cap, uint32_t vocab_size) {
    size_t needed = 0;
    kl_status status;
    if (which == KL_LOGITS_LAST || which == KL_LOGITS_ALL) {
        const size_t rows = which == KL_LOGITS_ALL ? n : 1;
        if (vocab_size == 0 || rows > SIZE_MAX / vocab_size) {
            klb_fail_with(KL_ERR_INVALID_ARGUMENT, "vocab_size is 0 or the logits size overflows");
            return 0;
        }
        needed = rows * vocab_size;
        if (logits == NULL || logits_cap < needed) {
            klb_fail_with(KL_ERR_INVALID_ARGUMENT,
                          "the logits buffer is too small for the logits asked for");
            return 0;
        }
    }
    status = kl_session_append(session, tokens, n, which, needed ? logits : NULL);
    if (status != KL_OK) {
        klb_fail(status);
        return 0;
    }
    return (int64_t)needed;
}

/* kl_session_sample: a token from the last logits (not appended), or raises. */
int32_t klb_session_sample(kl_session* session, const kl_sampling_params* params) {
    int32_t token = KL_NO_TOKEN;
    kl_status status = kl_session_sample(session, params, &token);
    if (status != KL_OK) klb_fail(status);
    return token;
}

/* kl_session_next: samples, appends and returns the token in *token, and the text it
 * completes in piece (piece_cap bytes, NUL-terminated).  Returns the text's length in bytes;
 * when piece is too small for the text and its NUL, returns -(the capacity needed) with
 * nothing appended and *token = KL_NO_TOKEN.  piece_cap 0: the text is not wanted (its length
 * is still returned). */
int64_t klb_session_next(kl_session* session, const kl_sampling_params* params, char* piece,
                         size_t piece_cap, int32_t* token) {
    int32_t next = KL_NO_TOKEN;
    size_t len = 0;
    kl_status status;
    if (token) *token = KL_NO_TOKEN;
    status = kl_session_next(session, params, &next, piece_cap ? piece : NULL, piece_cap, &len);
    if (status == KL_OK) {
        if (token) *token = next;
        return (int64_t)len;
    }
    if (status == KL_ERR_INVALID_ARGUMENT && piece_cap > 0 && len + 1 > piece_cap)
        return -(int64_t)(len + 1);
    klb_fail(status);
    return 0;
}

/* kl_session_tokens into out (cap ids): the count, or -(count needed). */
int64_t klb_session_tokens(const kl_session* session, int32_t* out, size_t cap) {
    size_t n = 0;
    kl_status status = kl_session_tokens(session, out, cap, &n);
    return klb_sized(status, n, cap);
}

/* kl_session_state_size: bytes a snapshot takes now. */
uint64_t klb_session_state_size(const kl_session* session) {
    size_t size = 0;
    kl_status status = kl_session_state_size(session, &size);
    if (status != KL_OK) klb_fail(status);
    return (uint64_t)size;
}

/* kl_session_state_save into buf (cap bytes): the bytes written, or -(bytes needed). */
int64_t klb_session_state_save(const kl_session* session, void* buf, size_t cap) {
    size_t written = 0;
    kl_status status = kl_session_state_save(session, buf, cap, &written);
    return klb_sized(status, written, cap);
}

/* kl_tokenize of len bytes of UTF-8 text into out (cap ids): the count, or -(count needed). */
int64_t klb_tokenize(const kl_model* model, const char* text, size_t len, int parse_special,
                     int32_t* out, size_t cap) {
    size_t n = 0;
    kl_status status = kl_tokenize(model, text, len, parse_special, out, cap, &n);
    return klb_sized(status, n, cap);
}

/* kl_detokenize into out_text (out_cap bytes): the text's length in bytes (NUL added when
 * there is room), or -(length needed). */
int64_t klb_detokenize(const kl_model* model, const int32_t* ids, size_t n_ids, char* out_text,
                       size_t out_cap) {
    size_t len = 0;
    kl_status status = kl_detokenize(model, ids, n_ids, out_text, out_cap, &len);
    return klb_sized(status, len, out_cap);
}

/* kl_chat_template_apply.  The messages are packed (klb_unpack): role then content for each
 * message ("user\0Hi\0").  Returns the text's length in bytes, or -(length needed). */
int64_t klb_chat_template_apply(const kl_model* model, const char* packed, size_t packed_len,
                                int add_generation_prompt, char* out_text, size_t out_cap) {
    const char** strings = NULL;
    size_t n_strings = 0, n, i, len = 0;
    kl_chat_message* msgs = NULL;
    kl_status status;
    if (!klb_unpack(packed, packed_len, &strings, &n_strings)) return 0;
    if (n_strings % 2 != 0) {
        free((void*)strings);
        klb_fail_with(KL_ERR_INVALID_ARGUMENT,
                      "the packed messages must hold a role and a content per message");
        return 0;
    }
    n = n_strings / 2;
    if (n > 0) {
        msgs = (kl_chat_message*)malloc(n * sizeof(kl_chat_message));
        if (!msgs) {
            free((void*)strings);
            klb_fail_with(KL_ERR_OUT_OF_MEMORY, "out of memory");
            return 0;
        }
    }
    for (i = 0; i < n; ++i) {
        msgs[i].role = strings[2 * i];
        msgs[i].content = strings[2 * i + 1];
    }
    status = kl_chat_template_apply(model, msgs, n, add_generation_prompt, out_text, out_cap, &len);
    free(msgs);
    free((void*)strings);
    return klb_sized(status, len, out_cap);
}

/* kl_chat_tokenize: the conversation's ids, markup as special tokens and every message's
 * content as plain text (so no message can forge a control token).  The messages are packed
 * as for klb_chat_template_apply.  Returns the count, or -(count needed). */
int64_t klb_chat_tokenize(const kl_model* model, const char* packed, size_t packed_len,
                          int add_generation_prompt, int32_t* out, size_t cap) {
    const char** strings = NULL;
    size_t n_strings = 0, n, i, count = 0;
    kl_chat_message* msgs = NULL;
    kl_status status;
    if (!klb_unpack(packed, packed_len, &strings, &n_strings)) return 0;
    if (n_strings % 2 != 0) {
        free((void*)strings);
        klb_fail_with(KL_ERR_INVALID_ARGUMENT,
                      "the packed messages must hold a role and a content per message");
        return 0;
    }
    n = n_strings / 2;
    if (n > 0) {
        msgs = (kl_chat_message*)malloc(n * sizeof(kl_chat_message));
        if (!msgs) {
            free((void*)strings);
            klb_fail_with(KL_ERR_OUT_OF_MEMORY, "out of memory");
            return 0;
        }
    }
    for (i = 0; i < n; ++i) {
        msgs[i].role = strings[2 * i];
        msgs[i].content = strings[2 * i + 1];
    }
    status = kl_chat_tokenize(model, msgs, n, add_generation_prompt, out, cap, &count);
    free(msgs);
    free((void*)strings);
    return klb_sized(status, count, cap);
}

/* ---- generation: the C API's generator (kl_generator_*) -----------------------------------
 * A klb_generator is a kl_generator with its last step, so that the step's parts are read
 * back one value at a time.  The loop of a binding's generate is: klb_generator_next until
 * klb_generator_end is not KL_END_NONE, passing on the text of each step (klb_generator_piece)
 * as kl_session_generate passes it to its callback.  The session must outlive the generator
 * (freeing the generator does not touch the session). */
typedef struct klb_generator klb_generator;

/* kl_generator_free (NULL is a no-op). */
void klb_generator_free(klb_generator* generator) {
    if (!generator) return;
    kl_generator_free(generator->generator);
    if (generator->processor_free && generator->processor_user)
        generator->processor_free(generator->processor_user);
    free(generator);
}

/* kl_generator_next: one step; returns the token it appended (KL_NO_TOKEN if none), its end
 * reason and text are read with klb_generator_end / klb_generator_piece.  On failure
 * (KL_ERR_CANCELLED included) the step changed nothing, the generator still holds the step
 * before, and it raises. */
int32_t klb_generator_next(klb_generator* generator) {
    kl_status status;
    if (!generator) {
        klb_fail_with(KL_ERR_INVALID_ARGUMENT, "generator is NULL");
        return KL_NO_TOKEN;
    }
    status = kl_generator_next(generator->generator, &generator->step);
    if (status != KL_OK) {
        klb_fail(status);
        return KL_NO_TOKEN;
    }
    return generator->step.token;
}

/* Why the generation ended at the last step (KL_END_NONE: not yet; KL_END_CANCELLED after a
 * step a cancel stopped, which raised: the generator itself may go on). */
kl_end_reason klb_generator_end(const klb_generator* generator) {
    return generator ? generator->step.end : KL_END_NONE;
}

/* Tokens the generator has appended so far (stop tokens and a stop string's tokens included). */
uint32_t klb_generator_generated(const klb_generator* generator) {
    return generator ? generator->step.n_generated : 0;
}

/* The last step's token's natural-log probability (0 when not asked for or no token). */
float klb_generator_logprob(const klb_generator* generator) {
    return generator ? generator->step.logprob : 0.0f;
}

/* The last step's most likely tokens (most likely first) into out and their log-probabilities
 * into out_logprobs: the count (at most KL_MAX_TOP_LOGPROBS), or -(count) when either buffer
 * is smaller. */
int64_t klb_generator_top(const klb_generator* generator, int32_t* out, size_t cap,
                          float* out_logprobs, size_t logprobs_cap) {
    size_t n = generator ? generator->step.n_top : 0;
    if (n > cap || n > logprobs_cap) return -(int64_t)n;
    if (n > 0) {
        memcpy(out, generator->step.top_tokens, n * sizeof(int32_t));
        memcpy(out_logprobs, generator->step.top_logprobs, n * sizeof(float));
    }
    return (int64_t)n;
}

/* The last step's text (whole UTF-8 characters, may be empty) into out_text (out_cap bytes,
 * no NUL added): its length in bytes, or -(length needed); the text stays until the next
 * step. */
int64_t klb_generator_piece(const klb_generator* generator, char* out_text, size_t out_cap) {
    size_t len = generator ? generator->step.piece_len : 0;
    if (len > out_cap) return -(int64_t)len;
    if (len > 0) memcpy(out_text, generator->step.piece, len);
    return (int64_t)len;
}

%}

/* ---- batched decode: kl_batch_next / kl_batch_append ---------------------------------------
 * A klb_batch is one batched call's arguments and results, set and read one value at a time:
 * klb_batch_create(n), klb_batch_set(batch, i, session, params) for each i, then
 * klb_batch_next (or klb_batch_append), then klb_batch_token / klb_batch_piece for each i,
 * then klb_batch_free.  It borrows the sessions (they must outlive the call) and copies the
 * params.  The C API's rules hold: distinct sessions of one model, all or nothing. */
%{
struct klb_batch {
    size_t n;
    kl_session** sessions;
    kl_sampling_params* params;
    int32_t* tokens;
    size_t* piece_lens;
    char* pieces;        /* n texts of piece_stride bytes each, after klb_batch_next */
    size_t piece_stride;
};

/* kl_batch_next's text room per session, first and last: a text that does not fit fails the
 * call with nothing appended (the draw is a function of seed and position, so a retry gives
 * the same tokens) and the library does not say how much it needed, so the room grows. */
#define KLB_BATCH_FIRST_STRIDE ((size_t)256)
#define KLB_BATCH_LAST_STRIDE ((size_t)1 << 20)
%}

%inline %{
typedef struct klb_batch klb_batch;

/* Frees a batch (NULL is a no-op); not its sessions. */
void klb_batch_free(klb_batch* batch) {
    if (!batch) return;
    free(batch->sessions);
    free(batch->params);
    free(batch->tokens);
    free(batch->piece_lens);
    free(batch->pieces);
    free(batch);
}

/* A batch of n sessions, none set yet (each gets greedy sampling until klb_batch_set). */
klb_batch* klb_batch_create(size_t n) {
    klb_batch* batch;
    size_t i;
    if (n == 0) {
        klb_fail_with(KL_ERR_INVALID_ARGUMENT, "a batch needs at least one session");
        return NULL;
    }
    batch = (klb_batch*)calloc(1, sizeof(klb_batch));
    if (batch) {
        batch->n = n;
        batch->sessions = (kl_session**)calloc(n, sizeof(kl_session*));
        batch->params = (kl_sampling_params*)calloc(n, sizeof(kl_sampling_params));
        batch->tokens = (int32_t*)calloc(n, sizeof(int32_t));
        batch->piece_lens = (size_t*)calloc(n, sizeof(size_t));
    }
    if (!batch || !batch->sessions || !batch->params || !batch->tokens || !batch->piece_lens) {
        klb_batch_free(batch);
        klb_fail_with(KL_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    for (i = 0; i < n; ++i) kl_sampling_params_default(&batch->params[i]);
    return batch;
}

/* Session i of the batch and its sampling parameters (NULL: the defaults, greedy). */
void klb_batch_set(klb_batch* batch, size_t i, kl_session* session, const kl_sampling_params* params) {
    if (!batch || i >= batch->n) {
        klb_fail_with(KL_ERR_INVALID_ARGUMENT, "no such place in the batch");
        return;
    }
    batch->sessions[i] = session;
    if (params)
        batch->params[i] = *params;
    else
        kl_sampling_params_default(&batch->params[i]);
}

/* kl_batch_next: one token for each session in one pass, or raises (no session changed). */
void klb_batch_next(klb_batch* batch) {
    size_t stride = KLB_BATCH_FIRST_STRIDE;
    kl_status status;
    if (!batch) {
        klb_fail_with(KL_ERR_INVALID_ARGUMENT, "batch is NULL");
        return;
    }
    for (;;) {
        if (stride > batch->piece_stride) {
            char* pieces = batch->n <= SIZE_MAX / stride ? (char*)malloc(batch->n * stride) : NULL;
            if (!pieces) {
                klb_fail_with(KL_ERR_OUT_OF_MEMORY, "out of memory");
                return;
            }
            free(batch->pieces);
            batch->pieces = pieces;
            batch->piece_stride = stride;
        }
        status = kl_batch_next((kl_session* const*)batch->sessions, batch->n, batch->params,
                               batch->tokens, batch->pieces, stride, batch->piece_lens);
        if (status == KL_ERR_INVALID_ARGUMENT && stride < KLB_BATCH_LAST_STRIDE) {
            stride *= 16; /* perhaps a text without room: nothing changed, again with more */
            continue;
        }
        if (status != KL_OK) klb_fail(status);
        return;
    }
}

/* kl_batch_append: tokens[i] (n of them, one per session) appended in one pass, or raises. */
void klb_batch_append(klb_batch* batch, const int32_t* tokens, size_t n) {
    kl_status status;
    if (!batch || n != batch->n) {
        klb_fail_with(KL_ERR_INVALID_ARGUMENT, "one token per session of the batch is needed");
        return;
    }
    status = kl_batch_append((kl_session* const*)batch->sessions, n, tokens);
    if (status != KL_OK) klb_fail(status);
}

/* The token klb_batch_next appended to session i. */
int32_t klb_batch_token(const klb_batch* batch, size_t i) {
    return batch && i < batch->n ? batch->tokens[i] : KL_NO_TOKEN;
}

/* Session i's text of klb_batch_next (whole UTF-8 characters, may be empty) into out_text
 * (out_cap bytes, no NUL added): its length in bytes, or -(length needed). */
int64_t klb_batch_piece(const klb_batch* batch, size_t i, char* out_text, size_t out_cap) {
    size_t len = batch && batch->pieces && i < batch->n ? batch->piece_lens[i] : 0;
    if (len > out_cap) return -(int64_t)len;
    if (len > 0) memcpy(out_text, batch->pieces + i * batch->piece_stride, len);
    return (int64_t)len;
}

%}

/* ---- callbacks, one helper per language: load progress (kl_model_params' callback), a
 * checkpoint write's (klb_checkpoint_quantize) and klb_generator_create (the logits
 * processor) ------------------------------------------------------------------------------
 * progress_cb/progress_user stay hidden (a C function pointer means nothing to Java or C#);
 * each language sets them through klb_model_params_set_progress before klb_model_load or
 * klb_model_create_random, and passes its own to klb_checkpoint_quantize.  The callback runs
 * on the thread that loads or writes, during that call.  Python's SWIG module has none (the
 * kimi_linear package passes a ctypes callback). */
#if defined(SWIGJAVA)
/* Java: the callback calls relay.report(float) -> boolean (false aborts the load:
 * KL_ERR_CANCELLED) on the object given, which the public package makes catch everything it
 * calls.  The JNIEnv of the wrapper is passed in (numinputs=0). */
%typemap(in, numinputs=0) JNIEnv* jenv_ %{ $1 = jenv; %}
%{
#if defined(__cplusplus)
#define KLB_JVM(vm, f, ...) (vm)->f(__VA_ARGS__)
#define KLB_JVM_DETACH(vm) (vm)->DetachCurrentThread()
#else
#define KLB_JVM(vm, f, ...) (*(vm))->f(vm, __VA_ARGS__)
#define KLB_JVM_DETACH(vm) (*(vm))->DetachCurrentThread(vm)
#endif

typedef struct {
    JavaVM* vm;
    jobject relay; /* a global reference */
    jmethodID report;
} klb_java_progress;

static int klb_java_progress_call(float fraction, void* user) {
    klb_java_progress* progress = (klb_java_progress*)user;
    JNIEnv* jenv = NULL;
    int attached = 0;
    int abort_load = 1;
    jint got = KLB_JVM(progress->vm, GetEnv, (void**)&jenv, JNI_VERSION_1_6);
    if (got == JNI_EDETACHED) { /* a library thread: attach it for this call */
        if (KLB_JVM(progress->vm, AttachCurrentThread, (void**)&jenv, NULL) != JNI_OK) return 1;
        attached = 1;
    } else if (got != JNI_OK) {
        return 1;
    }
    /* An exception still pending from an earlier call (this thread): abort, call nothing;
     * the wrapper throws it when the load returns. */
    if (!KLB_JNI0(ExceptionCheck)) {
        jboolean go = KLB_JNI(CallBooleanMethod, progress->relay, progress->report, (jfloat)fraction);
        if (KLB_JNI0(ExceptionCheck)) {
            if (attached) KLB_JNI0(ExceptionClear); /* no Java frame here to receive it */
        } else {
            abort_load = go ? 0 : 1;
        }
    }
    if (attached) KLB_JVM_DETACH(progress->vm);
    return abort_load;
}

/* The callback's state for relay (an object with boolean report(float)), or NULL after
 * klb_fail_with.  Free it with klb_java_progress_free once the call it served has returned. */
static klb_java_progress* klb_java_progress_new(JNIEnv* jenv, jobject relay) {
    klb_java_progress* progress;
    jclass cls = KLB_JNI(GetObjectClass, relay);
    progress = (klb_java_progress*)calloc(1, sizeof(*progress));
    if (!progress) {
        klb_fail_with(KL_ERR_OUT_OF_MEMORY, "out of memory for the progress callback");
        return NULL;
    }
    progress->report = KLB_JNI(GetMethodID, cls, "report", "(F)Z");
    if (!progress->report || KLB_JNI(GetJavaVM, &progress->vm) != JNI_OK) {
        KLB_JNI0(ExceptionClear);
        free(progress);
        klb_fail_with(KL_ERR_INVALID_ARGUMENT, "relay has no method boolean report(float)");
        return NULL;
    }
    progress->relay = KLB_JNI(NewGlobalRef, relay);
    return progress;
}

static void klb_java_progress_free(JNIEnv* jenv, klb_java_progress* progress) {
    KLB_JNI(DeleteGlobalRef, progress->relay);
    free(progress);
}

/* The logits processor: relay.process(ByteBuffer, int[]) -> boolean (true ends the
 * generation).  The ByteBuffer is a direct buffer over the library's logits (writable, valid
 * during the call only); history a copy of the session's tokens.  A thread the library
 * started is attached for the call.  A Java exception (the relay lets none out; out of
 * memory making the arguments) ends the generation and stays pending on a Java thread, so the
 * native method throws it when it returns. */
typedef struct {
    JavaVM* vm;
    jobject relay; /* a global reference */
    jmethodID process;
} klb_java_processor;

static int klb_java_processor_call(void* user, float* logits, size_t vocab_size,
                                   const int32_t* history, size_t n_history) {
    klb_java_processor* processor = (klb_java_processor*)user;
    JNIEnv* jenv = NULL;
    int attached = 0;
    int stop = 1;
    jint got = KLB_JVM(processor->vm, GetEnv, (void**)&jenv, JNI_VERSION_1_6);
    if (got == JNI_EDETACHED) {
        if (KLB_JVM(processor->vm, AttachCurrentThread, (void**)&jenv, NULL) != JNI_OK) return 1;
        attached = 1;
    } else if (got != JNI_OK) {
        return 1;
    }
    if (!KLB_JNI0(ExceptionCheck)) {
        jobject buffer = KLB_JNI(NewDirectByteBuffer, logits, (jlong)(vocab_size * sizeof(float)));
        jintArray tokens = buffer ? KLB_JNI(NewIntArray, (jsize)n_history) : NULL;
        if (tokens) {
            jboolean ends;
            if (n_history > 0)
                KLB_JNI(SetIntArrayRegion, tokens, 0, (jsize)n_history, (const jint*)history);
            ends = KLB_JNI(CallBooleanMethod, processor->relay, processor->process, buffer, tokens);
            if (!KLB_JNI0(ExceptionCheck)) stop = ends ? 1 : 0;
        }
        if (tokens) KLB_JNI(DeleteLocalRef, tokens);
        if (buffer) KLB_JNI(DeleteLocalRef, buffer);
    }
    if (attached) {
        KLB_JNI0(ExceptionClear); /* no Java frame here to receive it */
        KLB_JVM_DETACH(processor->vm);
    }
    return stop;
}

/* Frees the processor's state with its generator (from any Java thread, e.g. a Cleaner's). */
static void klb_java_processor_free(void* user) {
    klb_java_processor* processor = (klb_java_processor*)user;
    JNIEnv* jenv = NULL;
    int attached = 0;
    jint got = KLB_JVM(processor->vm, GetEnv, (void**)&jenv, JNI_VERSION_1_6);
    if (got == JNI_EDETACHED &&
        KLB_JVM(processor->vm, AttachCurrentThread, (void**)&jenv, NULL) == JNI_OK) {
        attached = 1;
        got = JNI_OK;
    }
    if (got == JNI_OK) KLB_JNI(DeleteGlobalRef, processor->relay);
    if (attached) KLB_JVM_DETACH(processor->vm);
    free(processor);
}
%}
%inline %{
/* Sets params' progress callback to relay.report(float) -> boolean.  Pair each call with
 * klb_model_params_free_progress once the load has returned. */
void klb_model_params_set_progress(JNIEnv* jenv_, kl_model_params* params, jobject relay) {
    klb_java_progress* progress;
    if (!params || !relay) {
        klb_fail_with(KL_ERR_INVALID_ARGUMENT, "params and relay must not be null");
        return;
    }
    progress = klb_java_progress_new(jenv_, relay);
    if (!progress) return;
    params->progress_cb = klb_java_progress_call;
    params->progress_user = progress;
}

/* kl_checkpoint_quantize_with_progress, raising on failure; relay (may be null: no progress)
 * as klb_model_params_set_progress's, called during the write on this thread. */
void klb_checkpoint_quantize(JNIEnv* jenv_, const char* in_dir, const char* out_dir,
                             kl_weight_format format, uint64_t shard_bytes, jobject relay) {
    klb_java_progress* progress = NULL;
    kl_status status;
    if (relay) {
        progress = klb_java_progress_new(jenv_, relay);
        if (!progress) return;
    }
    status = kl_checkpoint_quantize_with_progress(in_dir, out_dir, format, shard_bytes,
                                                  progress ? klb_java_progress_call : NULL,
                                                  progress);
    if (progress) klb_java_progress_free(jenv_, progress);
    if (status != KL_OK) klb_fail(status);
}

/* klb_generator_open's arguments: see there.  processor (may be null): an object with a method
 * boolean process(java.nio.ByteBuffer logits, int[] history), called per step on the thread
 * that steps the generator (see klb_java_processor_call); the public package's relay catches
 * what the user's processor throws. */
klb_generator* klb_generator_create(JNIEnv* jenv_, kl_session* session, uint32_t max_new_tokens,
                                    const kl_sampling_params* sampling,
                                    const int32_t* stop_tokens, size_t n_stop_tokens,
                                    const char* stop_strings, size_t stop_strings_len,
                                    int logprobs, uint32_t n_top_logprobs,
                                    const int32_t* bias_tokens, size_t n_bias_tokens,
                                    const float* bias_values, size_t n_bias_values,
                                    jobject processor) {
    JNIEnv* jenv = jenv_;
    klb_java_processor* state = NULL;
    if (processor) {
        jclass cls = KLB_JNI(GetObjectClass, processor);
        state = (klb_java_processor*)calloc(1, sizeof(*state));
        if (!state) {
            klb_fail_with(KL_ERR_OUT_OF_MEMORY, "out of memory for the logits processor");
            return NULL;
        }
        state->process = KLB_JNI(GetMethodID, cls, "process", "(Ljava/nio/ByteBuffer;[I)Z");
        if (!state->process || KLB_JNI(GetJavaVM, &state->vm) != JNI_OK) {
            KLB_JNI0(ExceptionClear);
            free(state);
            klb_fail_with(KL_ERR_INVALID_ARGUMENT,
                          "processor has no method boolean process(ByteBuffer, int[])");
            return NULL;
        }
        state->relay = KLB_JNI(NewGlobalRef, processor);
    }
    return klb_generator_open(session, max_new_tokens, sampling, stop_tokens, n_stop_tokens,
                              stop_strings, stop_strings_len, logprobs, n_top_logprobs,
                              bias_tokens, n_bias_tokens, bias_values, n_bias_values,
                              state ? klb_java_processor_call : NULL, state,
                              state ? klb_java_processor_free : NULL);
}

/* Frees what klb_model_params_set_progress set (nothing if it set nothing). */
void klb_model_params_free_progress(JNIEnv* jenv_, kl_model_params* params) {
    klb_java_progress* progress;
    if (!params || params->progress_cb != klb_java_progress_call) return;
    progress = (klb_java_progress*)params->progress_user;
    params->progress_cb = NULL;
    params->progress_user = NULL;
    klb_java_progress_free(jenv_, progress);
}
%}
#elif defined(SWIGCSHARP)
/* C#: the callback is a delegate, marshalled to a C function pointer by P/Invoke; the caller
 * keeps the delegate alive until the load returns and lets no exception leave it. */
%pragma(csharp) modulecode=%{
  /// <summary>kl_progress_callback: return non-zero to abort the load.</summary>
  [global::System.Runtime.InteropServices.UnmanagedFunctionPointer(
      global::System.Runtime.InteropServices.CallingConvention.Cdecl)]
  public delegate int ProgressCallback(float fraction, global::System.IntPtr user);
%}
%typemap(ctype) kl_progress_callback "kl_progress_callback"
%typemap(imtype) kl_progress_callback "kimi_linear_native.ProgressCallback"
%typemap(cstype) kl_progress_callback "kimi_linear_native.ProgressCallback"
%typemap(csin) kl_progress_callback "$csinput"
%typemap(in) kl_progress_callback %{ $1 = $input; %}
%pragma(csharp) modulecode=%{
  /// <summary>kl_logits_processor: return non-zero to end the generation.</summary>
  [global::System.Runtime.InteropServices.UnmanagedFunctionPointer(
      global::System.Runtime.InteropServices.CallingConvention.Cdecl)]
  public delegate int LogitsProcessorCallback(global::System.IntPtr user, global::System.IntPtr logits,
                                              global::System.UIntPtr vocabSize, global::System.IntPtr history,
                                              global::System.UIntPtr nHistory);
%}
%typemap(ctype) kl_logits_processor "kl_logits_processor"
%typemap(imtype) kl_logits_processor "kimi_linear_native.LogitsProcessorCallback"
%typemap(cstype) kl_logits_processor "kimi_linear_native.LogitsProcessorCallback"
%typemap(csin) kl_logits_processor "$csinput"
%typemap(in) kl_logits_processor %{ $1 = $input; %}
%inline %{
/* klb_generator_open's arguments: see there.  processor (may be null): a delegate the caller
 * keeps alive as long as the generator, letting no exception leave it. */
klb_generator* klb_generator_create(kl_session* session, uint32_t max_new_tokens,
                                    const kl_sampling_params* sampling,
                                    const int32_t* stop_tokens, size_t n_stop_tokens,
                                    const char* stop_strings, size_t stop_strings_len,
                                    int logprobs, uint32_t n_top_logprobs,
                                    const int32_t* bias_tokens, size_t n_bias_tokens,
                                    const float* bias_values, size_t n_bias_values,
                                    kl_logits_processor processor) {
    return klb_generator_open(session, max_new_tokens, sampling, stop_tokens, n_stop_tokens,
                              stop_strings, stop_strings_len, logprobs, n_top_logprobs,
                              bias_tokens, n_bias_tokens, bias_values, n_bias_values,
                              processor, NULL, NULL);
}

/* Sets params' progress callback (NULL: none); its user pointer is NULL. */
void klb_model_params_set_progress(kl_model_params* params, kl_progress_callback callback) {
    if (!params) {
        klb_fail_with(KL_ERR_INVALID_ARGUMENT, "params must not be null");
        return;
    }
    params->progress_cb = callback;
    params->progress_user = NULL;
}

/* kl_checkpoint_quantize_with_progress, raising on failure; callback (may be null: no
 * progress) as klb_model_params_set_progress's, called during the write on this thread. */
void klb_checkpoint_quantize(const char* in_dir, const char* out_dir, kl_weight_format format,
                             uint64_t shard_bytes, kl_progress_callback callback) {
    kl_status status =
        kl_checkpoint_quantize_with_progress(in_dir, out_dir, format, shard_bytes, callback, NULL);
    if (status != KL_OK) klb_fail(status);
}
%}
#elif defined(SWIGPYTHON)
%inline %{
/* klb_generator_open's arguments: see there (no logits processor: the kimi_linear package
 * passes a ctypes one to the C API itself). */
klb_generator* klb_generator_create(kl_session* session, uint32_t max_new_tokens,
                                    const kl_sampling_params* sampling,
                                    const int32_t* stop_tokens, size_t n_stop_tokens,
                                    const char* stop_strings, size_t stop_strings_len,
                                    int logprobs, uint32_t n_top_logprobs,
                                    const int32_t* bias_tokens, size_t n_bias_tokens,
                                    const float* bias_values, size_t n_bias_values) {
    return klb_generator_open(session, max_new_tokens, sampling, stop_tokens, n_stop_tokens,
                              stop_strings, stop_strings_len, logprobs, n_top_logprobs,
                              bias_tokens, n_bias_tokens, bias_values, n_bias_values,
                              NULL, NULL, NULL);
}
%}
#endif
