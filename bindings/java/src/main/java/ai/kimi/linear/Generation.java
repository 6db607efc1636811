package ai.kimi.linear;

import ai.kimi.linear.internal.SWIGTYPE_p_klb_generator;
import ai.kimi.linear.internal.kimi_linear_native;
import ai.kimi.linear.internal.kimi_linear_nativeConstants;
import ai.kimi.linear.internal.kl_end_reason;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;

/**
 * The pieces of one {@link Session#generate} call, produced as they are read: each
 * {@link #hasNext()} that needs a new piece runs one step of the C library's generator
 * ({@code kl_generator_next}), which holds the whole generation loop: sampling, stop tokens,
 * UTF-8 assembly and stop strings. See {@link Session#generate} for the stop rules.
 *
 * <p>The native generator is freed when the generation ends (or fails), on {@link #close()}
 * (reading on after a close throws {@link IllegalStateException}), and by a
 * {@link java.lang.ref.Cleaner} for a generation dropped unfinished. Once it has ended,
 * {@link #finishReason()} says why; {@link #tokens()} holds the tokens it appended (with their
 * log-probabilities when {@link GenerateOptions} asked for them). An exception thrown by the
 * options' {@link LogitsProcessor} ends it ({@link FinishReason#ERROR}) and is rethrown by the
 * {@code hasNext()}/{@code next()} that ran the step.
 */
public final class Generation extends NativeResource implements Iterator<String> {
    private final Session session;
    private final SWIGTYPE_p_klb_generator handle;
    private final ProcessorRelay processor; // null: none
    private final boolean logprobs;
    private final int[] topTokens;
    private final float[] topLogprobs;
    private final List<Token> tokens = new ArrayList<>();
    private final StringBuilder text = new StringBuilder();
    private Runnable onEnd; // run once by the first close()
    private byte[] piece = new byte[256];
    private String ready; // the piece read ahead by hasNext
    private int generated;
    private volatile FinishReason reason; // null while it runs

    Generation(Session session, SWIGTYPE_p_klb_generator handle, ProcessorRelay processor, boolean logprobs,
            int topLogprobs) {
        super("generation", () -> kimi_linear_native.klb_generator_free(handle));
        this.session = session;
        this.handle = handle;
        this.processor = processor;
        this.logprobs = logprobs;
        this.topTokens = new int[topLogprobs];
        this.topLogprobs = new float[topLogprobs];
    }

    @Override
    public boolean hasNext() {
        while (ready == null && reason == null) step();
        return ready != null;
    }

    @Override
    public String next() {
        if (!hasNext()) throw new NoSuchElementException();
        String out = ready;
        ready = null;
        return out;
    }

    /** Tokens appended so far (stop tokens and the tokens of a stop string included). */
    public int generatedTokens() {
        return generated;
    }

    /**
     * Why generation ended; null while it runs, and after a {@link #close()} before its end
     * (except one that follows a {@link GenerationPublisher}'s cancel: {@link FinishReason#CANCELLED}).
     */
    public FinishReason finishReason() {
        return reason;
    }

    /**
     * The tokens appended so far, one per step that appended one (a stop token included), each
     * with the text its step released and, when asked for, its log-probabilities (a copy: a
     * {@link GenerationPublisher} may be stepping it on another thread).
     */
    public List<Token> tokens() {
        synchronized (tokens) {
            return List.copyOf(tokens);
        }
    }

    /** The text passed on so far: the pieces joined. */
    public String text() {
        return text.toString();
    }

    /**
     * Frees the native generator (the tokens so far stay appended); reading on throws. Called by
     * the generation itself when it ends or fails. Idempotent.
     */
    @Override
    public void close() {
        if (isClosed()) return;
        super.close();
        Runnable hook = onEnd;
        onEnd = null;
        if (hook != null) hook.run();
    }

    /** Runs {@code hook} once, when the generation is closed (its end, a failure or close()). */
    void onEnd(Runnable hook) {
        onEnd = hook;
    }

    /** Marks a generation closed by a cancel before its end as cancelled. */
    void endCancelled() {
        if (reason == null) reason = FinishReason.CANCELLED;
        close();
    }

    /** One generator step; its text is passed on the way kl_session_generate passes it on. */
    private void step() {
        acquire();
        try {
            int token;
            try {
                token = session.generatorNext(handle);
            } catch (KimiLinearException.Cancelled e) {
                reason = FinishReason.CANCELLED;
                throw e;
            } catch (RuntimeException | Error e) {
                reason = FinishReason.ERROR;
                throw e;
            }
            kl_end_reason end = kimi_linear_native.klb_generator_end(handle);
            generated = (int) kimi_linear_native.klb_generator_generated(handle);
            String text = pieceText();
            if (token != kimi_linear_nativeConstants.KL_NO_TOKEN) {
                Token t = token(token, text);
                synchronized (tokens) {
                    tokens.add(t);
                }
            }
            // A token's text, even empty; the ending step without a token (or with a stop
            // token) carries only text that was still held back, if any.
            boolean tokenPiece = token != kimi_linear_nativeConstants.KL_NO_TOKEN && end != kl_end_reason.KL_END_STOP_TOKEN;
            if (tokenPiece || !text.isEmpty()) {
                ready = text;
                this.text.append(text);
            }
            reason = finishReason(end);
            Throwable thrown = processor != null ? processor.takeThrown() : null;
            if (thrown != null) {
                reason = FinishReason.ERROR;
                ready = null;
                throw Rethrow.sneaky(thrown);
            }
        } finally {
            release();
            if (reason != null) close();
        }
    }

    private Token token(int id, String text) {
        if (!logprobs) return new Token(id, text);
        float logprob = kimi_linear_native.klb_generator_logprob(handle);
        List<TokenLogprob> top = List.of();
        if (topTokens.length > 0) {
            int n = (int) kimi_linear_native.klb_generator_top(handle, topTokens, topLogprobs);
            TokenLogprob[] alternatives = new TokenLogprob[Math.max(n, 0)];
            for (int i = 0; i < alternatives.length; ++i)
                alternatives[i] = new TokenLogprob(topTokens[i], topLogprobs[i]);
            top = List.of(alternatives);
        }
        return new Token(id, text, logprob, top);
    }

    private String pieceText() {
        for (;;) {
            long n = kimi_linear_native.klb_generator_piece(handle, piece);
            if (n >= 0) return new String(piece, 0, (int) n, StandardCharsets.UTF_8);
            piece = new byte[Model.checkedSize(-n)];
        }
    }

    private static FinishReason finishReason(kl_end_reason end) {
        switch (end) {
            case KL_END_NONE:
                return null;
            case KL_END_LENGTH:
                return FinishReason.LENGTH;
            case KL_END_STOP_TOKEN:
                return FinishReason.STOP_TOKEN;
            case KL_END_STOP_STRING:
                return FinishReason.STOP_STRING;
            case KL_END_CALLBACK:
                return FinishReason.CALLBACK;
            case KL_END_CANCELLED:
                return FinishReason.CANCELLED;
            default:
                return FinishReason.ERROR;
        }
    }
}
