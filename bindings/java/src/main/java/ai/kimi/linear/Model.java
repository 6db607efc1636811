package ai.kimi.linear;

import ai.kimi.linear.internal.SWIGTYPE_p_kl_model;
import ai.kimi.linear.internal.SWIGTYPE_p_kl_session;
import ai.kimi.linear.internal.kimi_linear_native;
import ai.kimi.linear.internal.kimi_linear_nativeConstants;
import ai.kimi.linear.internal.kl_device;
import ai.kimi.linear.internal.kl_model_info;
import ai.kimi.linear.internal.kl_model_params;
import ai.kimi.linear.internal.kl_session_params;
import ai.kimi.linear.internal.kl_weight_format;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * A loaded Kimi Linear model: weights and tokenizer, immutable, shared by any number of
 * {@link Session}s on any threads.
 *
 * <p>Close it when done (try-with-resources); a {@link java.lang.ref.Cleaner} frees a model that
 * was never closed once it is unreachable. Closing a model while its sessions are still open is
 * safe: each session keeps the weights alive (the C library holds them by shared ownership) and
 * they are freed with the last session. Use after close throws {@link IllegalStateException}.
 */
public final class Model extends NativeResource {
    private final SWIGTYPE_p_kl_model handle;
    private final ModelInfo info;
    private final boolean hasTokenizer;

    private Model(SWIGTYPE_p_kl_model handle) {
        super("model", () -> kimi_linear_native.kl_model_free(handle));
        this.handle = handle;
        this.info = readInfo(handle);
        this.hasTokenizer = kimi_linear_native.klb_model_has_tokenizer(handle) != 0;
    }

    /** Loads a Hugging Face style checkpoint folder with the default options (AUTO device). */
    public static Model load(Path dir) {
        return load(dir, ModelOptions.defaults());
    }

    /** Loads a checkpoint folder on {@code device} ("auto", "cpu", "cuda") with {@code threads} CPU threads (0 = all). */
    public static Model load(Path dir, String device, int threads) {
        return load(dir, ModelOptions.defaults().withDevice(device).withThreads(threads));
    }

    /** Loads a checkpoint folder: config.json, *.safetensors, tokenizer files if present. */
    public static Model load(Path dir, ModelOptions options) {
        return load(dir, options, null);
    }

    /**
     * {@link #load(Path, ModelOptions)} reporting progress (null: none): returning false from
     * it aborts the load with {@link KimiLinearException.Cancelled}.
     */
    public static Model load(Path dir, ModelOptions options, LoadProgress progress) {
        Objects.requireNonNull(dir, "dir");
        kl_model_params params = toNative(options);
        try {
            return new Model(ProgressRelay.run(params, progress,
                    () -> kimi_linear_native.klb_model_load(dir.toString(), params)));
        } finally {
            params.delete();
        }
    }

    /**
     * A model with deterministic random weights for a config.json text (no files, no tokenizer):
     * benchmarks and tests of any shape.
     */
    public static Model createRandom(String configJson, long seed, ModelOptions options) {
        return createRandom(configJson, seed, options, null);
    }

    /** {@link #createRandom(String, long, ModelOptions)} reporting progress (null: none). */
    public static Model createRandom(String configJson, long seed, ModelOptions options, LoadProgress progress) {
        Objects.requireNonNull(configJson, "configJson");
        kl_model_params params = toNative(options);
        try {
            return new Model(ProgressRelay.run(params, progress,
                    () -> kimi_linear_native.klb_model_create_random(configJson, seed, params)));
        } finally {
            params.delete();
        }
    }

    /** The library's version, "MAJOR.MINOR.PATCH". */
    public static String libraryVersion() {
        return kimi_linear_native.kl_version();
    }

    /** The ABI major of the loaded library (the SONAME suffix). */
    public static int abiVersion() {
        return (int) kimi_linear_native.kl_abi_version();
    }

    /** The ABI major these bindings were generated for. */
    public static int bindingAbiVersion() {
        return kimi_linear_nativeConstants.KL_ABI_VERSION;
    }

    private static kl_model_params toNative(ModelOptions options) {
        Objects.requireNonNull(options, "options");
        kl_model_params params = new kl_model_params();
        kimi_linear_native.kl_model_params_default(params);
        params.setDevice(kl_device.swigToEnum(options.device().ordinal()));
        params.setDevice_index(options.deviceIndex());
        params.setN_threads(options.threads());
        params.setMax_batch(options.maxBatch());
        params.setBatch_wait_us(options.batchWaitUs());
        params.setWeight_format(kl_weight_format.swigToEnum(options.weights().ordinal()));
        kimi_linear_native.klb_model_params_set_devices(
                params, options.devices().stream().mapToInt(Integer::intValue).toArray());
        return params;
    }

    private static ModelInfo readInfo(SWIGTYPE_p_kl_model handle) {
        kl_model_info i = kimi_linear_native.klb_model_info(handle);
        try {
            return new ModelInfo((int) i.getVocab_size(), (int) i.getHidden_size(), (int) i.getN_layers(),
                    (int) i.getN_kda_layers(), (int) i.getN_mla_layers(), (int) i.getN_experts(),
                    (int) i.getN_experts_active(), i.getMax_context(), Device.of(i.getDevice().swigValue()),
                    i.getWeight_bytes(), i.getSession_fixed_bytes(), i.getKv_bytes_per_token(),
                    i.getBos_token(), i.getEos_token(), i.getN_params(), i.getN_active_params(), i.getEot_token(),
                    i.getN_routed_params(), i.getDecode_weight_bytes(), i.getRouted_weight_bytes(),
                    (int) i.getN_devices());
        } finally {
            i.delete();
        }
    }

    /** What the model is (read once at load: a model is immutable). Works after close. */
    public ModelInfo info() {
        return info;
    }

    /** True if the model folder had a tokenizer (tiktoken.model): the text functions work. */
    public boolean hasTokenizer() {
        return hasTokenizer;
    }

    /** A new session at position 0 with the model's default context capacity. */
    public Session newSession() {
        return newSession(0);
    }

    /** A new session whose MLA cache holds {@code maxContext} tokens (0 = the model's default). */
    public Session newSession(long maxContext) {
        if (maxContext < 0) throw new IllegalArgumentException("maxContext < 0");
        acquire();
        try {
            kl_session_params params = new kl_session_params();
            try {
                kimi_linear_native.kl_session_params_default(params);
                params.setMax_context(maxContext);
                SWIGTYPE_p_kl_session session = kimi_linear_native.klb_session_create(handle, params);
                return new Session(session, this);
            } finally {
                params.delete();
            }
        } finally {
            release();
        }
    }

    /**
     * Token ids of {@code text} (no BOS added). {@code parseSpecial}: the text of an added token
     * (e.g. "&lt;|im_end|&gt;") becomes its id; otherwise such text is plain text.
     *
     * @throws KimiLinearException.Unsupported if the model has no tokenizer
     */
    public int[] tokenize(String text, boolean parseSpecial) {
        Objects.requireNonNull(text, "text");
        acquire();
        try {
            // Every token covers at least one byte; most cover several characters.
            int[] out = new int[text.length() + 8];
            for (;;) {
                long n = kimi_linear_native.klb_tokenize(handle, text, parseSpecial ? 1 : 0, out);
                if (n >= 0) return n == out.length ? out : Arrays.copyOf(out, (int) n);
                out = new int[checkedSize(-n)];
            }
        } finally {
            release();
        }
    }

    /**
     * The text of {@code tokens} (added tokens as their text; ill-formed UTF-8 as U+FFFD).
     *
     * @throws KimiLinearException.InvalidArgument for a token the tokenizer does not have
     * @throws KimiLinearException.Unsupported if the model has no tokenizer
     */
    public String detokenize(int[] tokens) {
        Objects.requireNonNull(tokens, "tokens");
        acquire();
        try {
            byte[] out = new byte[tokens.length * 8 + 16];
            for (;;) {
                long n = kimi_linear_native.klb_detokenize(handle, tokens, out);
                if (n >= 0) return new String(out, 0, (int) n, StandardCharsets.UTF_8);
                out = new byte[checkedSize(-n)];
            }
        } finally {
            release();
        }
    }

    /**
     * The conversation in the model's chat format as text, for display and logs.
     * {@code addGenerationPrompt} appends the assistant's opening. A conversation that does not
     * start with a system message gets the model's default one, if its template has one.
     * To prompt the model use {@link #tokenizeChat}: tokenizing this text with parseSpecial =
     * true lets a message holding "&lt;|im_end|&gt;&lt;|im_system|&gt;..." become control tokens.
     */
    public String applyChatTemplate(List<ChatMessage> messages, boolean addGenerationPrompt) {
        byte[] in = packMessages(messages);
        acquire();
        try {
            byte[] out = new byte[in.length * 2 + 256];
            for (;;) {
                long n = kimi_linear_native.klb_chat_template_apply(handle, in, addGenerationPrompt ? 1 : 0, out);
                if (n >= 0) return new String(out, 0, (int) n, StandardCharsets.UTF_8);
                out = new byte[checkedSize(-n)];
            }
        } finally {
            release();
        }
    }

    /** Role and content of each message, packed (klb_chat_template_apply, klb_chat_tokenize). */
    private static byte[] packMessages(List<ChatMessage> messages) {
        Objects.requireNonNull(messages, "messages");
        List<String> strings = new ArrayList<>(2 * messages.size());
        for (ChatMessage m : messages) {
            Objects.requireNonNull(m, "a message is null");
            strings.add(m.role());
            strings.add(m.content());
        }
        return packStrings(strings, "a chat message");
    }

    /**
     * The conversation's token ids in the model's chat format (kl_chat_tokenize), for
     * {@link Session#append}: the format's markup becomes its special tokens and each message's
     * content is plain text, so no message can forge a control token. Roles, default system
     * message and {@code addGenerationPrompt} as in {@link #applyChatTemplate}.
     *
     * @throws KimiLinearException.InvalidArgument for an unknown role
     * @throws KimiLinearException.Unsupported if the model has no tokenizer
     */
    public int[] tokenizeChat(List<ChatMessage> messages, boolean addGenerationPrompt) {
        byte[] in = packMessages(messages);
        acquire();
        try {
            int[] out = new int[in.length + 256];  // well-formed text: at most one id a byte
            for (;;) {
                long n = kimi_linear_native.klb_chat_tokenize(handle, in, addGenerationPrompt ? 1 : 0, out);
                if (n >= 0) return n == out.length ? out : Arrays.copyOf(out, (int) n);
                out = new int[checkedSize(-n)];
            }
        } finally {
            release();
        }
    }

    /** Strings as the klb_* helpers take a list: NUL-terminated UTF-8, one after another. */
    static byte[] packStrings(List<String> strings, String what) {
        ByteArrayOutputStream packed = new ByteArrayOutputStream();
        for (String s : strings) {
            if (s.indexOf('\0') >= 0) throw new KimiLinearException.InvalidArgument(what + " contains a NUL character");
            packed.writeBytes(s.getBytes(StandardCharsets.UTF_8));
            packed.write(0);
        }
        return packed.toByteArray();
    }

    static int checkedSize(long size) {
        if (size > Integer.MAX_VALUE - 8)
            throw new KimiLinearException.OutOfMemory("a result of " + size + " elements does not fit a Java array");
        return (int) size;
    }

    @Override
    public String toString() {
        return "Model[" + info + (isClosed() ? ", closed]" : "]");
    }
}
