package ai.kimi.linear;

import ai.kimi.linear.internal.SWIGTYPE_p_kl_session;
import ai.kimi.linear.internal.SWIGTYPE_p_klb_generator;
import ai.kimi.linear.internal.kimi_linear_native;
import ai.kimi.linear.internal.kl_logits;
import ai.kimi.linear.internal.kl_sampling_params;
import java.nio.charset.StandardCharsets;
import java.util.Objects;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.concurrent.Executor;
import java.util.concurrent.Flow;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

/**
 * One conversation's state (KDA and conv states, MLA cache) over a {@link Model}.
 *
 * <p>A session is used by one thread at a time, except {@link #cancel()} and {@link #clearCancel()},
 * which any thread may call; a call while another runs throws {@link KimiLinearException.Busy}
 * (and changes nothing). A failed call changes nothing: position, state and last logits are as before. Close it
 * when done; a {@link java.lang.ref.Cleaner} frees one that was never closed. It stays usable
 * after its model is closed. Use after close throws {@link IllegalStateException}.
 */
public final class Session extends NativeResource {
    private final SWIGTYPE_p_kl_session handle;
    private final Model model;
    private final int vocabSize;
    // kl_session_next's inputs, reused from token to token.
    private final kl_sampling_params nativeSampling;
    private SamplingParams nativeSamplingValue;
    private byte[] piece = new byte[256];
    private final int[] tokenOut = new int[1];

    Session(SWIGTYPE_p_kl_session handle, Model model) {
        this(handle, model, new kl_sampling_params());
    }

    private Session(SWIGTYPE_p_kl_session handle, Model model, kl_sampling_params sampling) {
        super("session", () -> {
            kimi_linear_native.kl_session_free(handle);
            sampling.delete();
        });
        this.handle = handle;
        this.model = model;
        this.vocabSize = model.info().vocabSize();
        this.nativeSampling = sampling;
    }

    /** The native session, for a call made while this session is acquired ({@link Batch}). */
    SWIGTYPE_p_kl_session handle() {
        return handle;
    }

    /** The model this session runs (it may be closed: the session keeps what it needs). */
    public Model model() {
        return model;
    }

    /** The model's vocabulary size: the length of a logits row. */
    public int vocabSize() {
        return vocabSize;
    }

    /**
     * Runs {@code tokens} through the model at the current position (a prefill when there are
     * several, a decode step for one). The last token's logits are kept for sampling.
     *
     * @throws KimiLinearException.InvalidArgument for an empty array or a token id outside the vocabulary
     * @throws KimiLinearException.ContextFull if the session cannot hold the tokens
     */
    public void append(int... tokens) {
        Objects.requireNonNull(tokens, "tokens");
        acquire();
        try {
            kimi_linear_native.klb_session_append(handle, tokens, kl_logits.KL_LOGITS_NONE, null, vocabSize);
        } finally {
            release();
        }
    }

    /** {@link #append} that also returns the last token's logits (vocabSize floats). */
    public float[] appendWithLogits(int... tokens) {
        Objects.requireNonNull(tokens, "tokens");
        float[] logits = new float[vocabSize];
        acquire();
        try {
            kimi_linear_native.klb_session_append(handle, tokens, kl_logits.KL_LOGITS_LAST, logits, vocabSize);
        } finally {
            release();
        }
        return logits;
    }

    /** {@link #append} that returns every token's logits, row after row (tokens.length * vocabSize floats). */
    public float[] appendWithAllLogits(int... tokens) {
        Objects.requireNonNull(tokens, "tokens");
        float[] logits = new float[Model.checkedSize((long) tokens.length * vocabSize)];
        acquire();
        try {
            kimi_linear_native.klb_session_append(handle, tokens, kl_logits.KL_LOGITS_ALL, logits, vocabSize);
        } finally {
            release();
        }
        return logits;
    }

    /** Tokens consumed so far. */
    public long position() {
        acquire();
        try {
            return kimi_linear_native.klb_session_position(handle);
        } finally {
            release();
        }
    }

    /**
     * The token ids consumed so far, in order ({@link #position()} of them): the prompts, what
     * was appended and what was generated ({@code kl_session_tokens}).
     */
    public int[] tokens() {
        acquire();
        try {
            int[] out = new int[Model.checkedSize(kimi_linear_native.klb_session_position(handle))];
            for (;;) {
                long n = kimi_linear_native.klb_session_tokens(handle, out);
                if (n >= 0) return n == out.length ? out : java.util.Arrays.copyOf(out, (int) n);
                out = new int[Model.checkedSize(-n)];
            }
        } finally {
            release();
        }
    }

    /** Back to position 0, all state zero, no last logits. */
    public void reset() {
        acquire();
        try {
            kimi_linear_native.kl_session_reset(handle);
        } finally {
            release();
        }
    }

    /** An independent deep copy of the whole state (cheap prefix reuse). Close it too. */
    public Session fork() {
        acquire();
        try {
            return new Session(kimi_linear_native.klb_session_fork(handle), model);
        } finally {
            release();
        }
    }

    /** A versioned, checksummed snapshot of the state, for {@link #loadState}. */
    public byte[] saveState() {
        acquire();
        try {
            byte[] buf = new byte[Model.checkedSize(kimi_linear_native.klb_session_state_size(handle))];
            for (;;) {
                long n = kimi_linear_native.klb_session_state_save(handle, buf);
                if (n >= 0) return n == buf.length ? buf : java.util.Arrays.copyOf(buf, (int) n);
                buf = new byte[Model.checkedSize(-n)];
            }
        } finally {
            release();
        }
    }

    /**
     * Restores a snapshot of {@link #saveState}.
     *
     * @throws KimiLinearException.Format for another model's, a corrupt or a truncated snapshot
     *     (the session is untouched then)
     */
    public void loadState(byte[] snapshot) {
        Objects.requireNonNull(snapshot, "snapshot");
        acquire();
        try {
            kimi_linear_native.kl_session_state_load(handle, snapshot);
        } finally {
            release();
        }
    }

    /**
     * Cancels: the running call on this session, or else the next one, among {@link #append},
     * {@link #next}, and the steps of a {@link Generation}, throws
     * {@link KimiLinearException.Cancelled} (with the state as before it) and consumes the
     * request. So a cancel is never lost between two steps of a stream. A request pending when
     * {@link #generate} is called is dropped (it was aimed at what ran before); so is one
     * pending at {@link #reset} or {@link #clearCancel}. Any thread (the C rule:
     * {@code kl_session_cancel}). On a closed session it does nothing: a stop button may race
     * with the session's end.
     */
    public void cancel() {
        if (!tryAcquire()) return;
        try {
            kimi_linear_native.kl_session_cancel(handle);
        } finally {
            release();
        }
    }

    /**
     * Drops a pending {@link #cancel()} request. Call it when a new request starts, so that a
     * cancel that arrived after the previous one ended cannot stop it. Any thread; nothing on
     * a closed session.
     */
    public void clearCancel() {
        if (!tryAcquire()) return;
        try {
            kimi_linear_native.kl_session_clear_cancel(handle);
        } finally {
            release();
        }
    }

    /** A token sampled from the last logits, not appended. */
    public int sample(SamplingParams sampling) {
        acquire();
        try {
            return kimi_linear_native.klb_session_sample(handle, nativeSampling(sampling));
        } finally {
            release();
        }
    }

    /**
     * Samples the next token from the last logits, appends it and returns it with the text it
     * completes ({@code kl_session_next}). Append a prompt first.
     */
    public Token next(SamplingParams sampling) {
        acquire();
        try {
            kl_sampling_params params = nativeSampling(sampling);
            for (;;) {
                long n = kimi_linear_native.klb_session_next(handle, params, piece, tokenOut);
                if (n >= 0) return new Token(tokenOut[0], new String(piece, 0, (int) n, StandardCharsets.UTF_8));
                piece = new byte[Model.checkedSize(-n)]; // nothing was appended: again, with room
            }
        } finally {
            release();
        }
    }

    /** {@link #next(SamplingParams)} with the default (greedy) sampling. */
    public Token next() {
        return next(SamplingParams.defaults());
    }

    /**
     * Generates text, pulled one token at a time as the iterator is read, the way
     * {@code kl_session_generate} streams it: one piece per generated token (possibly empty),
     * until {@link GenerateOptions#maxNewTokens()}, a stop token (appended, not emitted) or a
     * stop string (the text before it is emitted; it and anything after are not, though the
     * tokens that made them are appended). Text that may start a stop string is held back until
     * it cannot; text still held when generation ends another way comes as one last piece (an
     * unfinished character as U+FFFD). Append a prompt first. The loop runs in the C library
     * (a {@code kl_generator}, created here: the options are checked now); the returned
     * {@link Generation} only steps it. Failures surface from {@code hasNext()}/{@code next()};
     * the tokens already generated stay appended. Read it to the end or close it. A
     * {@link #cancel()} pending when this is called is dropped; any from then on stops the
     * generation (the step running, or the next).
     *
     * @throws KimiLinearException.InvalidArgument for an empty or ill-formed stop string, or one
     *     with a NUL character
     * @throws KimiLinearException.Unsupported for stop strings on a model without a tokenizer
     */
    public Generation generate(GenerateOptions options) {
        Objects.requireNonNull(options, "options");
        for (String stop : options.stopStrings())
            if (!isWellFormed(stop))
                throw new KimiLinearException.InvalidArgument("a stop string is not valid UTF-16 (lone surrogate)");
        byte[] stops = Model.packStrings(options.stopStrings(), "a stop string");
        int[] biasTokens = new int[options.logitBias().size()];
        float[] biasValues = new float[biasTokens.length];
        int i = 0;
        for (java.util.Map.Entry<Integer, Float> e : options.logitBias().entrySet()) {
            biasTokens[i] = e.getKey();
            biasValues[i++] = e.getValue();
        }
        ProcessorRelay processor = options.logitsProcessor() != null ? new ProcessorRelay(options.logitsProcessor()) : null;
        acquire();
        try {
            // The generator checks the options (empty stop strings, no tokenizer, bias ids and
            // values) and copies them.
            SWIGTYPE_p_klb_generator generator = kimi_linear_native.klb_generator_create(
                    handle, options.maxNewTokens(), nativeSampling(options.sampling()), options.stopTokens(), stops,
                    options.logprobs() ? 1 : 0, options.topLogprobs(), biasTokens, biasValues, processor);
            return new Generation(this, generator, processor, options.logprobs(), options.topLogprobs());
        } finally {
            release();
        }
    }

    /**
     * A chat turn: appends {@code messages} in the model's chat format with the assistant's
     * opening ({@link Model#tokenizeChat}) and {@link #generate}s the reply, which ends at the
     * end-of-turn token ({@link ModelInfo#eotToken()}, added to the options' stop tokens) as well
     * as by the options' rules. For a conversation that goes on, see {@link Conversation}.
     */
    public Generation chat(java.util.List<ChatMessage> messages, GenerateOptions options) {
        Objects.requireNonNull(options, "options");
        int[] prompt = model.tokenizeChat(messages, true);
        GenerateOptions turn = withEndOfTurn(model.info(), options);
        append(prompt);
        return generate(turn);
    }

    /** options with the model's end-of-turn token among the stop tokens (when it has one). */
    static GenerateOptions withEndOfTurn(ModelInfo info, GenerateOptions options) {
        int eot = info.eotToken();
        int[] stops = options.stopTokens();
        if (eot < 0) return options;
        for (int t : stops) if (t == eot) return options;
        int[] more = java.util.Arrays.copyOf(stops, stops.length + 1);
        more[stops.length] = eot;
        return options.toBuilder().stopTokens(more).build();
    }

    /**
     * {@link #generate} as a sequential {@link Stream} of pieces (e.g. {@code collect(Collectors.joining())});
     * closing the stream closes the generation.
     */
    public Stream<String> stream(GenerateOptions options) {
        Generation generation = generate(options);
        return StreamSupport.stream(
                        Spliterators.spliteratorUnknownSize(generation, Spliterator.ORDERED | Spliterator.NONNULL), false)
                .onClose(generation::close);
    }

    /**
     * {@link #generate} as a {@link Flow.Publisher} of pieces: each step runs as one task on the
     * default executor (a cached pool of daemon threads) and returns its thread when the native
     * call returns; {@code cancel()} on the subscription cancels the step in flight and frees
     * the generator after it returns. See {@link #publish(GenerateOptions, Executor)}.
     */
    public GenerationPublisher publish(GenerateOptions options) {
        return publish(options, GenerationPublisher.defaultExecutor());
    }

    /**
     * {@link #generate} as a {@link Flow.Publisher} of pieces, for one subscriber, each step one
     * task on {@code executor}, run only while there is demand (request(n)); the options are
     * checked and the generator made now. {@code cancel()} calls {@link #cancel()}, waits (on the
     * executor, not the caller) for the step in flight, frees the generator and leaves no cancel
     * request pending ({@link GenerationPublisher#finished()} completes then); the tokens generated
     * so far stay appended. Failures are onError (a {@link #cancel()} from elsewhere:
     * {@link KimiLinearException.Cancelled}).
     */
    public GenerationPublisher publish(GenerateOptions options, Executor executor) {
        Objects.requireNonNull(executor, "executor");
        return new GenerationPublisher(this, generate(options), executor);
    }

    /** One step of a {@link Generation}'s native generator, on this session. */
    int generatorNext(SWIGTYPE_p_klb_generator generator) {
        acquire();
        try {
            return kimi_linear_native.klb_generator_next(generator);
        } finally {
            release();
        }
    }

    private kl_sampling_params nativeSampling(SamplingParams sampling) {
        Objects.requireNonNull(sampling, "sampling");
        if (!sampling.equals(nativeSamplingValue)) {
            sampling.copyTo(nativeSampling);
            nativeSamplingValue = sampling;
        }
        return nativeSampling;
    }

    private static boolean isWellFormed(String s) {
        for (int i = 0; i < s.length(); ++i) {
            char c = s.charAt(i);
            if (Character.isHighSurrogate(c)) {
                if (i + 1 >= s.length() || !Character.isLowSurrogate(s.charAt(i + 1))) return false;
                ++i;
            } else if (Character.isLowSurrogate(c)) {
                return false;
            }
        }
        return true;
    }
}
